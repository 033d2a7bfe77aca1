"""Fit diagnostics: FitResult.diagnostics() and probgen.FitWarning say when a fit should not be trusted."""

import copy
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import probgen
from probgen.core.base import Model
from probgen.infer import diagnostics as D


def _fit_warnings(fn):
    """Run ``fn`` and return (its result, the FitWarnings it emitted)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in caught if issubclass(w.category, probgen.FitWarning)]


# ------------------------------------------------------------------ the loss-trend rule
def test_loss_trend_rule():
    rng = np.random.default_rng(0)
    t = np.arange(1000)
    noise = 0.05 * rng.normal(size=1000)
    converged = D.loss_trend(np.exp(-t / 50) + noise)
    assert converged["ok"] is True and abs(converged["drift"]) < converged["tolerance"]
    falling = D.loss_trend(np.exp(-t / 2000) + noise)  # still 20% above its limit at the end
    assert falling["ok"] is False and falling["drift"] > 0
    rising = D.loss_trend(np.r_[np.exp(-t[:500] / 20), np.linspace(0, 0.5, 500)] + noise)
    assert rising["ok"] is False and rising["drift"] < 0
    # a deterministic (noise-free) loss: only the 2% of progress counts, not significance
    assert D.loss_trend(1 / (1 + t))["ok"] is True
    assert D.loss_trend(np.ones(20))["ok"] is None  # 8 rows in the window: too short to judge
    # NaN rows (an adversarial history's critic-only steps) are skipped
    with_gaps = np.exp(-t / 50) + noise
    with_gaps[::2] = np.nan
    assert D.loss_trend(with_gaps)["ok"] is True


# ------------------------------------------------------------------ acceptance: the regression example
def _regression_data():
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-2, 2, 80)[:, None]
    return x, 1.5 * x[:, 0] - 0.3 + 0.4 * torch.randn(80, generator=g)


def test_unconverged_svi_warns_and_converged_does_not():
    x, y = _regression_data()
    model = probgen.models.BayesianLinearRegression(num_features=1)
    result, caught = _fit_warnings(lambda: model.fit((x, y), steps=500, progress=False, seed=0))  # default lr
    assert float(model.guide_loc_weight[0].detach()) < 0.8  # far from the true slope 1.5 (NUTS: 1.48)
    assert len(caught) == 1 and "loss levelled off" in str(caught[0].message)
    assert caught[0].filename == __file__  # attributed to the user's line, not to probgen's internals
    table = result.diagnostics()
    assert list(table.columns) == ["check", "value", "threshold", "ok", "what_to_do"]
    row = table.iloc[0]
    assert row["ok"] == False and row["value"] > row["threshold"] and "more steps" in row["what_to_do"]  # noqa: E712

    model = probgen.models.BayesianLinearRegression(num_features=1)
    result, caught = _fit_warnings(lambda: model.fit((x, y), steps=500, lr=0.05, progress=False, seed=0))
    assert caught == [] and bool(result.diagnostics()["ok"].all())
    assert abs(float(model.guide_loc_weight[0].detach()) - 1.5) < 0.1


# ------------------------------------------------------------------ non-finite loss
class _NanGrad(torch.autograd.Function):
    """Zero forward, NaN gradient: a finite loss whose update poisons the parameters."""

    @staticmethod
    def forward(ctx, p):
        return p.new_zeros(())

    @staticmethod
    def backward(ctx, grad):
        return torch.full((3,), math.nan)


class _Quadratic(Model):
    """The loss (p - 1)^2, poisoned at its ``bad_call``-th evaluation: a NaN loss (``kind="loss"``), or
    a finite loss with a NaN gradient (``kind="gradient"``: the update makes p NaN, the next loss is NaN)."""

    default_inference = "mle"

    def __init__(self, bad_call: int, kind: str):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(3))
        self.bad_call, self.kind, self.calls = bad_call, kind, 0

    def training_loss(self, x):
        self.calls += 1
        loss = ((self.p - 1) ** 2).sum() + 0 * x.sum()
        if self.calls == self.bad_call:
            return loss * math.nan if self.kind == "loss" else loss + _NanGrad.apply(self.p)
        return loss


def test_nan_loss_stops_naming_the_step_and_keeps_the_parameters():
    model = _Quadratic(bad_call=31, kind="loss")  # call 1 is the warm-up, so step 29 is poisoned
    snapshots = {}
    callback = lambda step, record, m: snapshots.__setitem__(step, m.p.detach().clone())  # noqa: E731
    with pytest.raises(D.NonFiniteLossError, match="at step 29") as err:
        model.fit(torch.zeros(8, 1), steps=100, lr=0.01, progress=False, seed=0, callbacks=callback)
    assert err.value.step == 29 and err.value.good_step == 28
    assert torch.equal(model.p.detach(), snapshots[28])  # the state after the last good update
    assert err.value.result.history["step"].tolist() == list(range(29))
    assert isinstance(err.value, FloatingPointError)


def test_nan_parameters_roll_back_to_the_last_finite_state():
    model = _Quadratic(bad_call=31, kind="gradient")  # step 29's update makes p NaN, step 30's loss is NaN
    snapshots = {}
    callback = lambda step, record, m: snapshots.__setitem__(step, m.p.detach().clone())  # noqa: E731
    with pytest.raises(D.NonFiniteLossError, match="at step 30") as err:
        model.fit(torch.zeros(8, 1), steps=100, eval_every=10, lr=0.01, progress=False, seed=0, callbacks=callback)
    assert err.value.good_step == 19  # the last evaluation point (every 10 steps) before the poisoned update
    assert torch.isfinite(model.p).all() and torch.equal(model.p.detach(), snapshots[19])


# ------------------------------------------------------------------ MCMC
def test_mcmc_checks_agree_with_arviz():
    import arviz as az

    rng = np.random.default_rng(0)
    mixed = az.from_dict(posterior={"a": rng.normal(size=(4, 500)), "b": rng.normal(size=(4, 500, 2))},
                         sample_stats={"diverging": np.zeros((4, 500), bool)})
    table = pd.DataFrame(D.mcmc_checks(mixed)).set_index("check")
    assert table["ok"].all()
    stuck = rng.normal(size=(4, 500)).cumsum(1) * 0.05 + np.arange(4)[:, None]  # chains far apart, autocorrelated
    bad = az.from_dict(posterior={"a": stuck, "b": rng.normal(size=(4, 500))},
                       sample_stats={"diverging": rng.random((4, 500)) < 0.01})
    table = pd.DataFrame(D.mcmc_checks(bad)).set_index("check")
    assert table.loc["MCMC R-hat (max)", "value"] == pytest.approx(float(az.rhat(bad)["a"]))
    assert table.loc["MCMC bulk ESS (min)", "value"] == pytest.approx(float(az.ess(bad, method="bulk")["a"]))
    assert table.loc["MCMC tail ESS (min)", "value"] == pytest.approx(float(az.ess(bad, method="tail")["a"]))
    assert table.loc["MCMC divergences", "value"] == int(bad.sample_stats["diverging"].sum()) > 0
    assert not table["ok"].any()


def test_short_nuts_run_warns_and_counts_max_depth_hits():
    x, y = _regression_data()
    model = probgen.models.BayesianLinearRegression(num_features=1)
    result, caught = _fit_warnings(lambda: model.fit((x[:20], y[:20]), inference="mcmc", num_samples=30,
                                                    warmup_steps=20, max_tree_depth=1, compiled=False,
                                                    progress=False, seed=0))
    table = result.diagnostics().set_index("check")
    # Pyro's NUTS (compiled=False; the compiled sampler records no tree depths): with max_tree_depth=1 every trajectory stops at the limit: all 2 x 30 draws hit it
    assert table.loc["MCMC draws at max tree depth", "value"] == 60
    assert not table.loc["MCMC bulk ESS (min)", "ok"]  # 60 draws cannot give an ESS of 400
    assert len(caught) == 1 and "max tree depth" in str(caught[0].message)


def test_depth_recording_does_not_change_the_draws():
    from pyro.infer import MCMC, NUTS

    x, y = _regression_data()
    model = probgen.models.BayesianLinearRegression(num_features=1)
    draws = []
    for kernel_cls in (NUTS, D.DepthRecordingNUTS):
        kernel = kernel_cls(model.model, max_tree_depth=3)
        with probgen.seeded(0), model.data_size(80):
            mcmc = MCMC(kernel, num_samples=15, warmup_steps=10, disable_progbar=True)
            mcmc.run(x, y)
        draws.append(mcmc.get_samples()["weight"])
    assert torch.equal(draws[0], draws[1])
    assert len(kernel.max_depth_hits) == 15


# ------------------------------------------------------------------ AIS
def test_ais_standard_error_warns_when_large():
    model = probgen.models.RBM(num_visible=30, num_hidden=12)
    with torch.no_grad():
        model.W.copy_(torch.randn(model.W.shape, generator=torch.Generator().manual_seed(0)) * 1.5)
    exact = model.exact_log_partition()
    (log_z, se), caught = _fit_warnings(lambda: model.ais_log_partition(num_chains=100, num_betas=10))
    assert se > 0.1 and len(caught) == 1 and "num_betas" in str(caught[0].message)
    (log_z, se), caught = _fit_warnings(lambda: model.ais_log_partition(num_chains=100, num_betas=3000))
    assert se < 0.1 and caught == [] and abs(log_z - exact) < 4 * se + 0.05
    row = D.ais_check(se, 100)
    assert row["ok"] is True and row["threshold"] == 0.1


# ------------------------------------------------------------------ adversarial
def test_collapsed_gan_is_detected():
    """A generator that cannot move (lr ~ 0) from an all-equal start, against a fast critic: the critic's
    hinge loss falls to its optimum and the samples are one point; both checks fail and fit warns."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(128, 2, generator=g) * 0.1 - 1, torch.randn(128, 2, generator=g) * 0.1 + 1])
    with probgen.seeded(0):
        gan = probgen.models.GAN(data_shape=(2,), latent_dim=2, hidden=(16,), objective="hinge")
    with torch.no_grad():
        gan.generator.net[-1].weight.zero_()  # every z maps to the same point
    result, caught = _fit_warnings(lambda: gan.fit(x, steps=200, batch_size=64, lr=1e-12, critic_lr=1e-2,
                                                   progress=False, seed=0))
    table = result.diagnostics().set_index("check")
    critic = table.loc["critic loss / its no-skill value (median, last 25%)"]
    spread = table.loc["sample spread / data spread"]
    assert critic["ok"] == False and critic["value"] < 0.05  # noqa: E712
    assert spread["ok"] == False and spread["value"] < 1e-3  # noqa: E712
    assert len(caught) == 1 and "r1_weight" in str(caught[0].message)


def test_critic_collapse_and_sample_spread_rules():
    assert D.critic_collapse([1.4] * 100, 2 * math.log(2))["ok"] is True
    assert D.critic_collapse([1.4] * 50 + [0.0] * 50, 2 * math.log(2))["ok"] is False
    assert D.critic_collapse([1.0] * 5, 2.0)["ok"] is None
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(300) % 3
    assert D.sample_spread(x, x.flip(0)) == pytest.approx(1.0, abs=0.02)
    # one class collapsed: the overall spread looks fine, the per-class one does not
    fake = x.clone()
    fake[labels == 2] = 0.0
    assert D.sample_spread(x, fake) > 0.5 and D.sample_spread(x, fake, labels) == 0.0


def test_fit_warning_is_public_and_closed_form_fits_have_no_rows():
    assert issubclass(probgen.FitWarning, UserWarning) and "FitWarning" in probgen.__all__
    chain = probgen.models.MarkovChain()
    result, caught = _fit_warnings(lambda: chain.fit([[0, 1, 0, 1, 1]]))
    assert caught == [] and result.diagnostics().empty


def test_nan_in_an_adversarial_step_rolls_back_the_critic():
    """Engines with their own step (adversarial): the step's update has run when its NaN is seen, so
    the NaN weights are replaced by the last evaluation point's."""
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    with probgen.seeded(0):
        gan = probgen.models.GAN(data_shape=(2,), latent_dim=2, hidden=(8,))
    calls, snapshots = {"n": 0}, {}
    critic_loss = gan.critic_loss

    def poisoned(*batch):
        calls["n"] += 1
        loss = critic_loss(*batch)
        return loss * math.nan if calls["n"] == 25 else loss  # step 24

    gan.critic_loss = poisoned
    keep = lambda step, record, m: snapshots.__setitem__(step, copy.deepcopy(m.critic.state_dict()))  # noqa: E731
    with pytest.raises(D.NonFiniteLossError, match="critic_loss became nan at step 24") as err:
        gan.fit(x, steps=100, eval_every=10, batch_size=32, progress=False, seed=0, callbacks=keep)
    assert err.value.good_step == 19
    for name, value in gan.critic.state_dict().items():
        assert torch.isfinite(value).all() and torch.equal(value, snapshots[19][name])
