"""Restricted Boltzmann machines (probgen.models.rbm.rbm) and the RBM recommender (probgen.models.rbm.recommend)."""

import itertools
import math

import numpy as np
import pandas as pd
import pyro
import pytest
import torch
from scipy import stats

import probgen
from probgen.models import RBM, RecommenderRBM
from probgen.models.rbm.rbm import BlockGibbsKernel


def _random_rbm(num_visible, num_hidden, visible="bernoulli", scale=0.5, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(num_visible, num_hidden, visible=visible, **kw)
    dv = rbm.W.shape[0]
    rbm.load_state_dict({"W": scale * torch.randn(dv, num_hidden, generator=g),
                         "b": 0.5 * torch.randn(dv, generator=g), "c": 0.5 * torch.randn(num_hidden, generator=g),
                         "base_bias": 0.3 * torch.randn(dv, generator=g)})
    return rbm


def _all_binary(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def _two_patterns(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    proto = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]], dtype=torch.float32)
    x = proto[torch.randint(0, 2, (n,), generator=g)]
    return torch.where(torch.rand(x.shape, generator=g) < 0.05, 1 - x, x)


# ------------------------------------------------------------------ partition function
def test_ais_matches_exact_log_partition_of_12_hidden_units():
    rbm = _random_rbm(24, 12, scale=0.4)
    exact = rbm.exact_log_partition()
    estimate, se = rbm.ais_log_partition(num_chains=100, num_betas=2000, seed=0)
    assert se > 0
    assert abs(estimate - exact) < 2 * se


@pytest.mark.parametrize("visible", ["gaussian", "softmax"])
def test_ais_matches_exact_for_other_visible_units(visible):
    rbm = _random_rbm(5, 10, visible=visible, num_categories=3, scale=0.3)
    exact = rbm.exact_log_partition()
    estimate, se = rbm.ais_log_partition(num_chains=100, num_betas=1000, seed=0)
    assert abs(estimate - exact) < 3 * se + 1e-3


def test_exact_log_prob_is_normalised_and_both_enumerations_agree():
    rbm = _random_rbm(8, 22, scale=0.3)  # hidden layer too big: enumerates the visible side
    assert math.isclose(float(rbm.log_prob(_all_binary(8)).exp().sum()), 1.0, rel_tol=1e-4)
    small = _random_rbm(8, 6)
    by_hidden = small.exact_log_partition()
    by_visible = float(torch.logsumexp(-small.free_energy(_all_binary(8)), 0))
    assert math.isclose(by_hidden, by_visible, rel_tol=1e-5)
    soft = _random_rbm(3, 4, visible="softmax", num_categories=3)
    every = torch.tensor(list(itertools.product(range(3), repeat=3)))
    assert math.isclose(float(soft.log_prob(every).exp().sum()), 1.0, rel_tol=1e-4)


# ------------------------------------------------------------------ sampling
def test_gibbs_kernel_leaves_the_exact_distribution_invariant():
    rbm = _random_rbm(4, 3, scale=1.0)
    states = _all_binary(4)
    exact = rbm.log_prob(states).exp()
    n = 20_000
    with probgen.seeded(0):
        start = states[torch.multinomial(exact, n, replacement=True)]
        kernel = BlockGibbsKernel(rbm, num_particles=n)
        kernel.initial_params = {"v": start}
        after = kernel.sample(kernel.sample(kernel.initial_params))["v"]
    codes = (after * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    observed = torch.bincount(codes, minlength=16).numpy()
    expected = exact.double().numpy()
    assert stats.chisquare(observed, expected / expected.sum() * n).pvalue > 1e-3
    uniform = np.full(16, n / 16)
    assert stats.chisquare(observed, uniform).pvalue < 1e-6  # the test has power


def test_kernel_runs_in_pyro_mcmc_and_gives_arviz():
    rbm = _random_rbm(6, 4)
    mcmc = pyro.infer.MCMC(rbm.gibbs_kernel(), num_samples=30, warmup_steps=10, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples()["v"].shape == (30, 1, 6)
    idata = rbm.gibbs_chains(num_samples=50, warmup_steps=10, num_chains=2, seed=0)
    assert idata.posterior["free_energy"].shape == (2, 50)
    import arviz as az

    assert np.isfinite(float(az.rhat(idata)["free_energy"]))


def test_samples_reproduce_and_match_data_after_training():
    x = _two_patterns()
    rbm = RBM(8, 6)
    rbm.fit(x, epochs=30, batch_size=20, lr=0.1, progress=False, seed=0)
    a, b = rbm.sample(200, seed=1, steps=200), rbm.sample(200, seed=1, steps=200)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    # most samples are close to one of the two training patterns
    proto = torch.tensor([[1.0] * 4 + [0.0] * 4, [0.0] * 4 + [1.0] * 4])
    dist = torch.cdist(a, proto, p=1).min(1).values
    assert float((dist <= 1).float().mean()) > 0.6
    h = rbm.transform(x[:5])
    assert h.shape == (5, 6) and ((h >= 0) & (h <= 1)).all()
    assert rbm.decode(h).shape == (5, 8)


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("method", ["cd", "pcd", "pt"])
def test_training_raises_the_exact_likelihood(method):
    x = _two_patterns()
    rbm = RBM(8, 4, method=method, k=1 if method != "cd" else 3)
    before = float(rbm.log_prob(x).mean())
    result = rbm.fit(x, epochs=20, batch_size=20, lr=0.1, progress=False, seed=0)
    after = float(rbm.log_prob(x).mean())
    assert result.engine == "mcmc" and "loss" in result.history
    assert after > before + 1.0
    assert after > -8 * math.log(2) + 1.5  # well above the uniform distribution


def _reference_updates(W, b, c, data, u_v, u_h, u_mid, persistent, chain_ph, lr, momentum, wd):
    """Plain CD-k / PCD-k from given uniforms, one tensor op at a time (what _fused_cd must equal)."""
    vel = [torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(c)]
    ph, losses = chain_ph, []
    for i, v0 in enumerate(data):
        ph0 = torch.sigmoid(v0 @ W + c)
        if not persistent:
            ph = ph0
        k = u_h.shape[1]
        for j in range(k):
            h = (u_h[i, j, :, :-1] < ph).float()
            mean = torch.sigmoid(h @ W.T + b)
            if j < k - 1:
                ph = torch.sigmoid((u_mid[i, j, :, :-1] < mean).float() @ W + c)
            else:
                vk = (u_v[i] < mean).float()
        phk = torch.sigmoid(vk @ W + c)
        ph = phk
        losses.append(((torch.sigmoid(ph0 @ W.T + b) - v0) ** 2).sum() / len(v0))
        grads = [v0.T @ ph0 / len(v0) - vk.T @ phk / len(vk) - wd * W, v0.mean(0) - vk.mean(0), ph0.mean(0) - phk.mean(0)]
        for g, vl, param in zip(grads, vel, (W, b, c)):
            vl.mul_(momentum).add_(lr * g)
            param.add_(vl)
    return W, b, c, ph, losses


@pytest.mark.parametrize("persistent,k,n,m,momentum,wd", [(True, 1, 4, 4, 0.0, 0.0), (True, 2, 3, 5, 0.5, 0.01),
                                                          (False, 1, 4, 4, 0.0, 0.0), (False, 3, 4, 4, 0.9, 0.001)])
def test_fused_updates_equal_the_plain_algorithm(persistent, k, n, m, momentum, wd):
    from probgen.models.rbm.rbm import _augment, _fused_cd

    g = torch.Generator().manual_seed(0)
    dv, nh, steps, lr = 6, 5, 7, 0.3
    W, b, c = 0.5 * torch.randn(dv, nh, generator=g), 0.3 * torch.randn(dv, generator=g), 0.3 * torch.randn(nh, generator=g)
    data = (torch.rand(steps, n, dv, generator=g) < 0.5).float()
    m = m if persistent else n
    u_v = torch.rand(steps, m, dv, generator=g)
    u_h = torch.rand(steps, k, m, nh + 1, generator=g)
    u_mid = torch.rand(steps, k - 1, m, dv + 1, generator=g)
    chain_ph = torch.rand(m, nh, generator=g) if persistent else None
    v = torch.ones(steps, n + m, dv + 1)
    v[:, :n, :dv], v[:, n:, :dv] = data, u_v
    mid = u_mid.clone()
    mid[..., dv] = 1.0
    wa, losses = _augment(W, b, c), []
    vel = torch.zeros_like(wa) if momentum else None
    ph_aug = torch.cat([chain_ph, torch.ones(m, 1)], 1) if persistent else None
    last = _fused_cd(wa, v, u_h.clone(), mid, n, persistent, lr, momentum, wd, vel, ph_aug, list(range(steps)), losses)
    rW, rb, rc, rph, rlosses = _reference_updates(W.clone(), b.clone(), c.clone(), data, u_v, u_h, u_mid, persistent,
                                                  chain_ph, lr, momentum, wd)
    torch.testing.assert_close(wa[:-1, :-1], rW, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(wa[:-1, -1], rb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(wa[-1, :-1], rc, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last, rph, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.stack(losses), torch.stack(rlosses), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(wa[:-1, :-1], W)  # the updates moved the weights


def test_fused_fit_reproduces_and_keeps_one_history_row_per_epoch():
    x = _two_patterns()
    runs = []
    for _ in range(2):
        rbm = RBM(8, 4, momentum=0.5)
        result = rbm.fit(x, epochs=6, batch_size=30, lr=0.1, progress=False, seed=3)
        runs.append((rbm.W.clone(), result))
    assert torch.equal(runs[0][0], runs[1][0])
    history = runs[0][1].history
    assert history["epoch"].tolist() == list(range(6)) and history["step"].tolist() == [7 * e + 6 for e in range(6)]  # 7 updates per epoch
    assert runs[0][1].info["steps"] == 42 and "steps=42" in repr(runs[0][1])
    other = RBM(8, 4, momentum=0.5)
    other.fit(x, epochs=6, batch_size=30, lr=0.1, progress=False, seed=4)
    assert not torch.equal(other.W, runs[0][0])
    seen = []
    stopped = RBM(8, 4).fit(x, epochs=6, batch_size=30, lr=0.1, progress=False, seed=0,
                            callbacks=[lambda step, record, model: seen.append(step) or step >= 13])
    assert seen == [6, 13] and len(stopped.history) == 2 and stopped.info["steps"] == 14


def test_gaussian_rbm_fits_two_clusters():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(100, 3, generator=g) * 0.3 + 1.5, torch.randn(100, 3, generator=g) * 0.3 - 1.5])
    rbm = RBM(3, 4, visible="gaussian")
    before = float(rbm.log_prob(x).mean())
    rbm.fit(x, epochs=30, batch_size=20, lr=0.02, progress=False, seed=0)
    assert float(rbm.log_prob(x).mean()) > before


def test_bad_input_is_reported_clearly():
    rbm = RBM(4, 3)
    with pytest.raises(ValueError, match="binary"):
        rbm.fit(torch.rand(10, 4), progress=False)
    with pytest.raises(ValueError, match="4 visible"):
        rbm.free_energy(torch.ones(2, 5))
    with pytest.raises(ValueError, match="NaN"):
        rbm.transform(torch.tensor([[0.0, 1.0, float("nan"), 0.0]]))
    soft = RBM(2, 3, visible="softmax", num_categories=3)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        soft.free_energy(torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match="method"):
        RBM(4, 3, method="gibbs")
    with pytest.raises(ValueError, match="visible"):
        RBM(4, 3, visible="poisson")
    with pytest.raises(ValueError, match="unknown option"):
        rbm.fit(torch.ones(4, 4), progress=False, temperature=2)


def test_save_load_keeps_weights(tmp_path):
    x = _two_patterns(60)
    rbm = RBM(8, 3)
    rbm.fit(x, epochs=3, batch_size=20, progress=False, seed=0)
    back = probgen.load(probgen.save(rbm, tmp_path / "rbm.safetensors"))
    assert torch.equal(back.sample(5, seed=0, steps=10), rbm.sample(5, seed=0, steps=10))
    assert torch.allclose(back.log_prob(x), rbm.log_prob(x))


# ------------------------------------------------------------------ recommendation (more in test_recommend.py)
def test_shared_levels_learn_each_users_rating_scale():
    # generous and harsh users, no item effect, 300 items with about 5 ratings each: per-item
    # weights cannot learn a user's scale, weights shared across items per level can
    rng = np.random.Generator(np.random.PCG64(0))
    generous = rng.integers(0, 2, 80)
    rows = [(u, int(m), (4.0 if generous[u] else 2.0) + float(rng.choice([-1.0, 0.0, 0.0, 1.0])))
            for u in range(80) for m in rng.choice(300, size=20, replace=False)]
    df = pd.DataFrame(rows, columns=["userId", "movieId", "rating"])
    test = df.groupby("userId").head(4)
    train = df.drop(test.index)
    test = test[test.movieId.isin(set(train.movieId))]
    global_mean = float(np.sqrt(((train["rating"].mean() - test["rating"]) ** 2).mean()))
    rmse = {}
    for shared in (False, True):
        rec = RecommenderRBM(num_hidden=4, shared_levels=shared)
        rec.fit(train, epochs=30, batch_size=10, lr=0.05, progress=False, seed=0)
        rmse[shared] = rec.rmse(test)
    assert rmse[True] < 0.85 * global_mean and rmse[True] < rmse[False] - 0.2
    assert rec.get_config()["shared_levels"] is True and rec.U.abs().sum() > 0
    with pytest.raises(ValueError, match="shared_levels"):
        RecommenderRBM(shared_levels="yes")


# ------------------------------------------------------------------ benches
def test_bench_rbm_quick():
    from probgen.bench.rbm import run

    frame = run(quick=True).frame()
    assert len(frame) == 4 and frame["probgen"].notna().all()
    acc = frame[frame.metric.str.contains("accuracy")].probgen
    assert (acc > 0.5).all()
