"""Compiled inference (probgen.infer.compiled): exactness against Pyro, the structure check, recompilation."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from probgen.core.base import Model
from probgen.core.random import seeded
from probgen.infer.compiled import CompiledELBO, CompiledPotential, CompileFallbackWarning, NotStaticError, check_static
from probgen.models.regression import BayesianLinearRegression


def _data(n=60, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, x @ torch.randn(d, generator=g) + 0.2 * torch.randn(n, generator=g)


def _perturbed(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _pyro_value(loss, model, batch, num_data, particles=1):
    with model.data_size(num_data):
        if loss == "iwae":
            return pyro.infer.RenyiELBO(alpha=0, num_particles=particles).loss(model.model, model.guide, *batch) / num_data
        cls = pyro.infer.Trace_ELBO if loss == "elbo" else pyro.infer.TraceMeanField_ELBO
        return cls(num_particles=particles).differentiable_loss(model.model, model.guide, *batch) / num_data


@pytest.mark.parametrize("loss", ["elbo", "meanfield"])
def test_loss_and_gradients_equal_pyro_on_the_same_draws(loss):
    # constrained PyroParams (positive scales) and a minibatch scaled to the full data by data_plate
    x, y = _data()
    model = _perturbed(BayesianLinearRegression(num_features=3))
    batch = (x[:20], y[:20])
    compiled = CompiledELBO(model, loss=loss, num_data=60, strict=True)
    params = [p for p in model.parameters()]
    for seed in (1, 2):
        with seeded(seed):
            ours = compiled(batch)
        with seeded(seed):
            theirs = _pyro_value(loss, model, batch, 60)
        assert compiled.is_compiled
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
        for a, b in zip(torch.autograd.grad(ours, params), torch.autograd.grad(theirs, params)):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    with seeded(3):
        a = compiled(batch)
    with seeded(4):
        b = compiled(batch)
    assert not torch.allclose(a, b)  # fresh draws on every call, not one frozen sample


def test_importance_weighted_bound_equals_renyi_alpha_zero():
    x, y = _data()
    model = _perturbed(BayesianLinearRegression(num_features=3))
    compiled = CompiledELBO(model, loss="iwae", num_particles=4, num_data=60, strict=True)
    with seeded(5):
        ours = float(compiled((x, y)).detach())
    with seeded(5):
        theirs = _pyro_value("iwae", model, (x, y), 60, particles=4)
    assert math.isclose(ours, theirs, rel_tol=1e-5)
    with seeded(5):
        elbo = float(CompiledELBO(model, num_particles=4, num_data=60)((x, y)))
    assert ours <= elbo + 1e-6  # the importance-weighted bound is the tighter one on the same draws


class _Branching(Model):
    """Control flow on a random draw: the guide's draw decides which site the model has."""

    def model(self, y):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(y)):
            if z > 0:
                pyro.sample("pos", dist.Normal(z, 1.0), obs=y)
            else:
                pyro.sample("neg", dist.Normal(-z, 1.0), obs=y)

    def guide(self, y):
        pyro.sample("z", dist.Normal(self.loc, 1.0))

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(()))


class _Growing(Model):
    """Python state changes a site's shape on every call."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(4))
        self.calls = 0

    def model(self, y):
        k = 2 + self.calls % 2
        w = pyro.sample("w", dist.Normal(torch.zeros(k), 1.0).to_event(1))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(w.sum(), 1.0), obs=y)

    def guide(self, y):
        self.calls += 1  # the guide runs first: the model sees the same k
        k = 2 + self.calls % 2
        pyro.sample("w", dist.Normal(self.loc[:k], 1.0).to_event(1))


def test_structure_check_refuses_data_dependent_control_flow():
    with pytest.raises(NotStaticError, match="'z'.*data-dependent"):
        check_static(_Branching(), torch.tensor([0.5]))


def test_structure_check_refuses_changing_shapes_naming_the_site():
    with pytest.raises(NotStaticError, match="site 'w'.*shape changed"):
        check_static(_Growing(), torch.tensor([0.5]))


def test_structure_check_refuses_non_reparameterised_guides():
    class Discrete(Model):
        def __init__(self):
            super().__init__()
            self.logit = torch.nn.Parameter(torch.zeros(()))

        def model(self, y):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("y", dist.Normal(c, 1.0), obs=y)

        def guide(self, y):
            pyro.sample("c", dist.Bernoulli(logits=self.logit))

    with pytest.raises(NotStaticError, match="'c'.*not reparameterisable"):
        check_static(Discrete(), torch.tensor([0.5]))


def test_fit_compiled_true_on_a_dynamic_program_names_the_site():
    with pytest.raises(NotStaticError, match="site 'w'"):
        _Growing().fit(torch.tensor([0.5, 0.2]), steps=3, progress=False, compiled=True)


def test_fit_auto_falls_back_with_a_note_and_still_fits():
    model = _Branching()
    with pytest.warns(CompileFallbackWarning, match="'z'"):
        result = model.fit(torch.tensor([0.5, 0.7, 0.9]), steps=1000, lr=0.05, progress=False, seed=0)
    assert len(result.history) == 1000


def test_fit_compiled_refuses_enumeration_and_bad_values():
    x, y = _data()
    with pytest.raises(ValueError, match="compiled: True does not go with loss='enum'"):
        BayesianLinearRegression(num_features=3).fit((x, y), steps=2, loss="enum", compiled=True, progress=False)
    with pytest.raises(ValueError, match="compiled: expected 'auto', True or False"):
        BayesianLinearRegression(num_features=3).fit((x, y), steps=2, compiled="yes", progress=False)


def test_a_changed_model_is_recompiled_not_stale():
    x, y = _data()
    model = _perturbed(BayesianLinearRegression(num_features=3))
    compiled = CompiledELBO(model, num_data=60, strict=True)
    compiled((x, y))
    compiled((x, y))
    assert compiled.traces == 1  # same signature: replayed
    compiled((x[:10], y[:10]))
    assert compiled.traces == 2  # a new input signature: traced anew
    model.prior_scale = 3.0  # a plain Python attribute the program reads
    with seeded(0):
        ours = compiled((x, y))
    with seeded(0):
        theirs = _pyro_value("elbo", model, (x, y), 60)
    assert compiled.traces == 3 and torch.allclose(ours, theirs, rtol=1e-5)
    # new parameter shapes: the model refitted for another number of features
    model.num_features = 4
    model.guide_loc_weight = pyro.nn.PyroParam(torch.zeros(4))
    model.guide_scale_weight = pyro.nn.PyroParam(torch.full((4,), 0.1), constraint=torch.distributions.constraints.positive)
    x4 = torch.randn(60, 4)
    with seeded(1):
        ours = compiled((x4, y))
    with seeded(1):
        theirs = _pyro_value("elbo", model, (x4, y), 60)
    assert compiled.traces == 4 and torch.allclose(ours, theirs, rtol=1e-5)


def test_compiled_fit_matches_the_ordinary_fit():
    # the same seed, the same minibatches and draws: the fitted parameters agree to float tolerance
    x, y = _data(n=80)
    fits = []
    for mode in (True, False):
        m = BayesianLinearRegression(num_features=3)
        m.fit((x, y), steps=60, batch_size=20, lr=0.05, progress=False, seed=0, compiled=mode)
        fits.append(torch.cat([p.detach().reshape(-1) for p in m.parameters()]))
    assert torch.allclose(fits[0], fits[1], rtol=1e-4, atol=1e-5)


def test_compiled_potential_gives_pyros_nuts_chain():
    # Pyro's NUTS on the compiled potential and on the model itself: the same draws for the same seed
    x, y = _data(n=40, d=2)
    model = BayesianLinearRegression(num_features=2)
    with seeded(0):
        pyro_mcmc = pyro.infer.MCMC(pyro.infer.NUTS(model.model), num_samples=20, warmup_steps=20, disable_progbar=True)
        pyro_mcmc.run(x, y)
    with seeded(0):
        pot = CompiledPotential(model, (x, y))
        ours = pyro.infer.MCMC(pyro.infer.NUTS(potential_fn=pot, transforms=pot.transforms), num_samples=20,
                               warmup_steps=20, initial_params=pot.initial_params, transforms=pot.transforms,
                               disable_progbar=True)
        ours.run()
    a, b = pyro_mcmc.get_samples(), ours.get_samples()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4), k


def test_compiled_potential_value_and_gradient_equal_pyros():
    x, y = _data(n=40, d=2)
    model = BayesianLinearRegression(num_features=2)
    pot = CompiledPotential(model, (x, y), seed=0)
    z = {k: v + 0.1 for k, v in pot.initial_params.items()}
    value, grad = pot.value_and_grad()(pot.pack(z))
    zr = {k: v.clone().requires_grad_() for k, v in z.items()}
    ref = pot._pyro_potential(zr)
    ref_grad = torch.autograd.grad(ref, [zr[k] for k in pot.site_shapes])
    assert torch.allclose(value, ref, rtol=1e-5)
    assert torch.allclose(grad, torch.cat([g.reshape(-1) for g in ref_grad]), rtol=1e-4, atol=1e-4)


class _NormalMean(Model):
    """z ~ N(0, 1), y_i ~ N(z, 1): the posterior is N(sum(y) / (n + 1), 1 / (n + 1))."""

    def model(self, y):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(z, 1.0), obs=y)

    def set_posterior_samples(self, samples):
        self.samples = samples


def test_compiled_nuts_samples_the_exact_posterior():
    y = torch.tensor([0.3, 1.2, 0.8, 1.9, 0.4])
    result = _NormalMean().fit(y, inference="mcmc", num_samples=600, warmup_steps=300, num_chains=2, seed=0,
                               progress=False, compiled=True)
    draws = result.inference_data.posterior["z"].values
    mean, sd = float(y.sum()) / 6, math.sqrt(1 / 6)
    import arviz as az

    mcse = float(az.mcse(result.inference_data, var_names=["z"])["z"])
    assert abs(draws.mean() - mean) < 4 * mcse
    assert abs(draws.std() - sd) < 0.1 * sd
    assert float(az.rhat(result.inference_data)["z"]) < 1.02


def test_bench_nuts_quick_reports_both_models():
    from probgen.bench.nuts import run

    report = run(quick=True)
    frame = report.frame()
    assert len(frame) == 2 and (frame["probgen"] > 0).all() and (frame["baseline"] > 0).all()
    table = report.tables["posterior agreement and convergence"]
    assert {"probgen max R-hat", "pyro max R-hat", "means within 3 MCSE"} <= set(table.columns)


def test_compiled_hmc_keeps_pyros_kernel_on_the_compiled_potential():
    y = torch.tensor([0.3, 1.2, 0.8, 1.9, 0.4])
    result = _NormalMean().fit(y, inference="mcmc", kernel="hmc", num_samples=150, warmup_steps=100, num_chains=1,
                               seed=0, progress=False, compiled=True)
    draws = result.inference_data.posterior["z"].values
    assert draws.shape == (1, 150) and abs(draws.mean() - float(y.sum()) / 6) < 0.15


def test_global_param_store_parameters_are_refused_not_frozen():
    class Global(Model):
        def model(self, y):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("data", len(y)):
                pyro.sample("y", dist.Normal(z, 1.0), obs=y)

        def guide(self, y):
            pyro.sample("z", dist.Normal(pyro.param("g_loc", torch.zeros(())), 1.0))

    pyro.clear_param_store()
    try:
        with pytest.raises(NotStaticError, match="'g_loc'.*global param store"):
            check_static(Global(), torch.tensor([0.5]))
    finally:
        pyro.clear_param_store()  # other tests expect the global store empty


def test_vae_with_local_latents_and_module_networks_compiles_exactly():
    # networks converted to PyroModules (their parameters are Pyro param sites) and a latent per example
    from probgen.models.autoencoders.vae import VAE

    model = VAE(data_shape=(1, 4, 4), latent_dim=2, network="mlp", hidden=(8,))
    x = (torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    batch = (x[:10],)
    compiled = CompiledELBO(model, num_data=30, strict=True)
    with seeded(0):
        ours = compiled(batch)
    with seeded(0), model.data_size(30):
        theirs = pyro.infer.Trace_ELBO(max_plate_nesting=1).differentiable_loss(model.model, model.guide, *batch) / 30
    assert compiled.is_compiled and torch.allclose(ours, theirs, rtol=1e-5)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(ours, params), torch.autograd.grad(theirs, params)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
