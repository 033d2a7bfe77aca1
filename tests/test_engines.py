"""The inference engines end to end on the reference family, and the training loop's options."""

import arviz as az
import numpy as np
import pandas as pd
import pytest
import torch

import probgen
from probgen.models import BayesianLinearRegression

TRUE_W = torch.tensor([1.5, -0.5])


def _data(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = x @ TRUE_W + 0.2 + 0.1 * torch.randn(n, generator=g)
    return x, y


def test_svi_recovers_weights_and_gives_arviz():
    x, y = _data()
    m = BayesianLinearRegression(num_features=2)
    r = probgen.fit(m, (x, y), steps=600, lr=0.05, progress=False, seed=0)
    assert r.engine == "svi" and isinstance(r.history, pd.DataFrame)
    assert r.history["loss"].iloc[-50:].mean() < r.history["loss"].iloc[:50].mean()
    torch.testing.assert_close(m.guide_loc_weight.detach(), TRUE_W, atol=0.08, rtol=0)
    idata = r.to_arviz(num_samples=400)
    summary = az.summary(idata)
    assert {"weight[0]", "weight[1]", "bias", "sigma"} <= set(summary.index)
    assert summary["r_hat"].max() < 1.05
    assert abs(summary.loc["weight[0]", "mean"] - 1.5) < 0.1


def test_jit_svi_trains_the_module_parameters_like_plain_svi():
    # Pyro's JIT ELBO reads the global param store; the svi engine must still train the
    # module's own parameters (the ones state_dict and save see) and follow the plain ELBO.
    import pyro

    x = (probgen.datasets.load("digits", split="train").x[:256] > 0.5).float()
    runs = {}
    for jit in (False, True):
        torch.manual_seed(0)  # the same initial weights for both fits
        vae = probgen.models.VAE(data_shape=(1, 8, 8), latent_dim=2, hidden=(32,))
        runs[jit] = (vae, vae.fit(x, steps=150, batch_size=64, lr=1e-2, progress=False, seed=0, jit=jit))
    (plain, r_plain), (jitted, r_jit) = runs[False], runs[True]
    loss_plain, loss_jit = r_plain.history["loss"].to_numpy(), r_jit.history["loss"].to_numpy()
    assert loss_jit[-30:].mean() < loss_jit[:30].mean() - 5
    np.testing.assert_allclose(loss_jit[-30:].mean(), loss_plain[-30:].mean(), rtol=0.05)
    # log_prob reads the module's parameters: the JIT fit must have trained those, not copies
    elbo_plain, elbo_jit = float(plain.log_prob(x, seed=0).mean()), float(jitted.log_prob(x, seed=0).mean())
    assert abs(elbo_jit - elbo_plain) < 0.05 * abs(elbo_plain)
    assert -elbo_jit < loss_jit[:10].mean() - 5
    assert not list(pyro.get_param_store().keys())  # the private store was discarded


def test_nuts_several_chains_with_sample_stats():
    x, y = _data(n=50)
    m = BayesianLinearRegression(num_features=2)
    r = m.fit((x, y), inference="mcmc", num_samples=150, warmup_steps=150, num_chains=2, progress=False, seed=0)
    idata = r.to_arviz()
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 150
    assert "diverging" in idata.sample_stats
    summary = az.summary(idata)
    assert summary["r_hat"].max() < 1.05 and summary["ess_bulk"].min() > 50
    assert abs(summary.loc["weight[0]", "mean"] - 1.5) < 0.1
    # later queries average over the NUTS draws
    assert len(m.posterior_bias) == 300
    preds = m.sample(200, seed=0, x=torch.tensor([[1.0, 0.0]]))
    assert abs(float(preds.mean()) - 1.7) < 0.1


def test_point_estimates_have_no_posterior():
    r = probgen.FitResult(model=None, engine="mle")
    with pytest.raises(ValueError, match="point estimate"):
        r.to_arviz()
    with pytest.raises(ValueError, match="no loss history"):
        r.final_loss


def test_validation_early_stopping_restores_best(tmp_path):
    x, y = _data()
    m = BayesianLinearRegression(num_features=2)
    # a tiny lr then a patience of 1 evaluation: stops early, keeps the best weights
    r = m.fit((x[:60], y[:60]), steps=400, lr=0.2, validation=(x[60:], y[60:]), patience=2, eval_every=5,
              progress=False, seed=1, checkpoint=tmp_path / "ckpt.safetensors")
    assert "val_loss" in r.history and r.info["steps"] <= 400
    assert r.info["best_val_loss"] == pytest.approx(r.history["val_loss"].min())
    back = probgen.load(tmp_path / "ckpt.safetensors")
    assert isinstance(back, BayesianLinearRegression)


def test_callbacks_can_stop_and_see_records():
    x, y = _data()
    seen = []

    def stop_at_ten(step, record, model):
        seen.append(record["loss"])
        return step == 9

    r = BayesianLinearRegression(num_features=2).fit((x, y), steps=100, callbacks=[stop_at_ten], progress=False)
    assert len(r.history) == 10 and len(seen) == 10
    assert np.allclose(r.history["loss"], seen)


def test_epochs_and_batches():
    x, y = _data(n=50)
    r = BayesianLinearRegression(num_features=2).fit((x, y), epochs=3, batch_size=20, progress=False, seed=0)
    assert len(r.history) == 9 and r.history["epoch"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert r.info["batch_size"] == 20


def test_mle_engine_on_an_exact_likelihood():
    """A minimal family with an exact log_prob: 'mle' drives it to the sample mean and scale."""
    from probgen.core.base import Model

    class Gaussian(Model):
        default_inference = "mle"
        log_prob_kind = "exact"

        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.zeros(()))
            self.log_scale = torch.nn.Parameter(torch.zeros(()))

        def log_prob(self, x):
            return torch.distributions.Normal(self.loc, self.log_scale.exp()).log_prob(x)

    x = 3 + 2 * torch.randn(500, generator=torch.Generator().manual_seed(0))
    g = Gaussian()
    g.fit(x, steps=800, lr=0.05, progress=False, seed=0)
    assert abs(float(g.loc) - float(x.mean())) < 0.05
    assert abs(float(g.log_scale.exp()) - float(x.std())) < 0.05


def test_engines_listed():
    assert probgen.infer.available() == ["adversarial", "bayes", "exact", "mcmc", "mle", "svi"]


def test_available_lists_only_engines_a_model_satisfies():
    from probgen.models import AdversarialAutoencoder, Autoencoder, BayesianNetwork, MarkovChain

    bn = BayesianNetwork([("a", "b")])
    assert probgen.infer.available(bn) == ["bayes", "exact", "mle"]
    assert probgen.infer.available(MarkovChain()) == ["bayes", "exact"]
    assert probgen.infer.available(BayesianLinearRegression(num_features=1)) == ["mcmc", "svi"]
    with pytest.raises(ValueError, match="cannot be fitted with 'svi'.*valid engines for it: bayes, exact, mle"):
        bn.fit({"a": [0, 1], "b": [1, 0]}, inference="svi")
    # a helper method named like an engine is not an engine: only @implements declares one
    ae = Autoencoder(latent_dim=2, hidden=(8,))
    with pytest.raises(KeyError, match="code_distribution"):
        ae.fit(torch.rand(8, 4), inference="code_distribution", steps=1, progress=False)
    assert "mle" not in probgen.infer.available(AdversarialAutoencoder(latent_dim=2, hidden=(8,)))
    with pytest.raises(ValueError, match="trains with 'adversarial'"):
        AdversarialAutoencoder(latent_dim=2, hidden=(8,)).fit(torch.rand(8, 4), inference="mle", progress=False)


def test_implements_declares_an_own_engine():
    from probgen.core.engines import implements

    class Counting(probgen.Model):
        @implements("exact")
        def count(self, data, **options):
            return {"rows": len(data)}

    assert Counting.own_engines == {"exact": "count"}
    r = probgen.fit(Counting(), [1, 2, 3], inference="exact")
    assert r.engine == "exact" and r.info == {"rows": 3}
    with pytest.raises(ValueError, match="engine name"):
        implements("not a name")


def test_svi_loss_checks_first_call_only_and_keeps_the_maths():
    # After its first call svi_loss turns off Pyro's validation; value and gradients must be
    # exactly those of the plain Trace_ELBO under the same random draws.
    import pyro

    from probgen.infer.svi import make_elbo, svi_loss

    x, y = _data()
    m = BayesianLinearRegression(num_features=2)
    elbo = make_elbo("elbo")
    loss_fn = svi_loss(m, elbo, len(x))
    for call in range(3):
        pyro.set_rng_seed(call)
        fast = loss_fn((x, y))
        fast_grads = torch.autograd.grad(fast, list(m.parameters()))
        pyro.set_rng_seed(call)
        with m.data_size(len(x)):
            plain = elbo.differentiable_loss(m.model, m.guide, x, y) / len(x)
        plain_grads = torch.autograd.grad(plain, list(m.parameters()))
        assert float(fast.detach()) == float(plain.detach())
        for a, b in zip(fast_grads, plain_grads):
            assert torch.equal(a, b)
        assert pyro.infer.is_validation_enabled() and pyro.poutine.is_validation_enabled()


def test_svi_loss_first_call_still_validates():
    # a guide with a site the model lacks: Pyro warns on the first call (and on every call
    # with check_every_step=True), not on later ones by default
    import warnings

    import pyro
    import pyro.distributions as dist

    from probgen.infer.svi import make_elbo, svi_loss

    class Mismatched(BayesianLinearRegression):
        def guide(self, x, y=None):
            super().guide(x, y)
            pyro.sample("extra", dist.Normal(0.0, 1.0))

    x, y = _data()
    for every_step, expected in ((False, [True, False, False]), (True, [True, True, True])):
        loss_fn = svi_loss(Mismatched(num_features=2), make_elbo("elbo"), len(x), check_every_step=every_step)
        warned = []
        for _ in range(3):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loss_fn((x, y))
            warned.append(any("in guide but not model" in str(w.message) for w in caught))
        assert warned == expected
    with pytest.raises(ValueError, match="check_every_step"):
        BayesianLinearRegression(num_features=2).fit((x, y), steps=2, progress=False, check_every_step="yes")


def test_regression_model_log_density_matches_the_priors_and_likelihood():
    # the model's cached priors give the same joint density as the distributions written out
    from pyro import poutine

    x, y = _data(n=30)
    m = BayesianLinearRegression(num_features=2, prior_scale=2.0, noise_scale=0.5)
    w, b, s = torch.tensor([0.3, -1.0]), torch.tensor(0.2), torch.tensor(0.7)
    values = {"weight": w, "bias": b, "sigma": s}
    for _ in range(2):  # the second call uses the cached priors
        trace = poutine.trace(poutine.condition(m.model, values)).get_trace(x, y)
        expected = (torch.distributions.Normal(0.0, 2.0).log_prob(w).sum()
                    + torch.distributions.Normal(0.0, 2.0).log_prob(b)
                    + torch.distributions.HalfNormal(0.5).log_prob(s)
                    + torch.distributions.Normal(x @ w + b, s).log_prob(y).sum())
        torch.testing.assert_close(trace.log_prob_sum(), expected)
