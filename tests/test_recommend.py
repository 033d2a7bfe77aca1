"""Recommenders (probgen.models.recommend and the RBM recommender): likelihood, fold-in, intervals, bad input."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

import probgen
from probgen.models import BayesianMF, MultDAE, MultVAE, RecommenderRBM
from probgen.models.recommend import UserMultinomial


def _taste_ratings(users=60, items=20, per_user=12, seed=0):
    """Two tastes: a user rates items of their kind (parity) 4-5 and the others 1-2."""
    rng = np.random.Generator(np.random.PCG64(seed))
    taste = rng.integers(0, 2, users)
    rows = []
    for u in range(users):
        for m in rng.choice(items, size=per_user, replace=False):
            liked = (m % 2) == taste[u]
            rows.append((u, int(m), float(rng.choice([4.0, 5.0]) if liked else rng.choice([1.0, 2.0]))))
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating"]), taste


# ------------------------------------------------------------------ the multinomial likelihood
def test_user_multinomial_is_a_distribution_over_each_users_item_count():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.0], [1.0, 1.0, -0.5, 0.2]])
    totals = torch.tensor([3.0, 2.0])
    d = UserMultinomial(logits, totals)
    assert torch.allclose(d.mean.sum(-1), totals)
    for row, n in enumerate(totals.long().tolist()):  # brute force: every count vector with total n
        vectors = torch.tensor([v for v in itertools.product(range(n + 1), repeat=4) if sum(v) == n], dtype=torch.float)
        probs = UserMultinomial(logits[row].expand(len(vectors), 4)).log_prob(vectors).exp()
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
        # and it is the multinomial: the same numbers as torch's
        ref = torch.distributions.Multinomial(n, logits=logits[row]).log_prob(vectors)
        assert torch.allclose(UserMultinomial(logits[row].expand(len(vectors), 4)).log_prob(vectors), ref, atol=1e-5)
    draws = UserMultinomial(logits, totals).sample((50,))
    assert torch.equal(draws.sum(-1), totals.expand(50, 2))


# ------------------------------------------------------------------ Mult-VAE / Mult-DAE
@pytest.mark.parametrize("cls, encode_all", [(MultVAE, False), (MultDAE, False), (MultVAE, True)])
def test_mult_models_learn_tastes_and_fold_in_reproduces_the_ranking(cls, encode_all):
    df, taste = _taste_ratings()
    kw = {"anneal_steps": 100} if cls is MultVAE else {}
    model = cls(latent_dim=4, hidden=(16,), threshold=4.0, encode_all=encode_all, **kw)
    model.fit(df, steps=150, lr=0.01, batch_size=30, progress=False, seed=0)
    # every user's top-3 unseen items are of their own taste (popularity cannot do this: both kinds are as popular)
    good = [all(m % 2 == taste[u] for m in model.recommend(u, k=3)["item"]) for u in range(len(taste))]
    assert np.mean(good) >= 0.9
    top = model.recommend(0, k=5)
    assert list(top.columns) == ["item", "title", "score"] and top["score"].is_monotonic_decreasing
    assert not set(top["item"]) & set(df[df.userId == 0].movieId)
    # fold-in of a training user from their ratings gives exactly the in-model ranking
    history = df[df.userId == 3]
    folded = model.recommend(dict(zip(history.movieId, history.rating)), k=8)
    pd.testing.assert_frame_equal(folded, model.recommend(3, k=8))
    frame = model.recommend(history, k=8)  # a one-user ratings DataFrame works too
    pd.testing.assert_frame_equal(frame, folded)
    # cold start from two ratings
    cold = model.recommend({0: 5.0, 2: 4.0}, k=3)
    assert all(m % 2 == 0 for m in cold["item"])
    seen_kept = model.recommend(0, k=20, exclude_seen=False)
    assert len(seen_kept) == 20


def test_multvae_beta_is_annealed_and_the_bound_is_below_the_iwae_free_log_likelihood():
    df, _ = _taste_ratings(30, 12, 6)
    vae = MultVAE(latent_dim=2, hidden=(), beta=0.5, anneal_steps=20)
    result = vae.fit(df, steps=30, lr=0.01, batch_size=10, progress=False, seed=0)
    beta = result.history["beta"].to_numpy()
    assert beta[0] == pytest.approx(0.5 / 20) and beta[-1] == pytest.approx(0.5) and np.all(np.diff(beta) >= 0)
    x = vae.counts()
    bound = vae.log_prob(x, num_particles=20, seed=0)
    assert bound.shape == (30,) and torch.isfinite(bound).all()
    # a lower bound on log p(x) <= 0 for a discrete x; the reconstruction term alone is above the ELBO
    assert (bound <= 0).all()
    with pytest.raises(probgen.core.base.NoLikelihoodError, match="instead"):
        MultDAE().log_prob(x)


# ------------------------------------------------------------------ Bayesian MF
def _simulated_mf(users=50, items=40, rank=2, noise=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    U, V = torch.randn(users, rank, generator=g), torch.randn(items, rank, generator=g)
    bu, bi = 0.5 * torch.randn(users, generator=g), 0.5 * torch.randn(items, generator=g)
    mask = torch.rand(users, items, generator=g) < 0.5
    u, i = torch.nonzero(mask, as_tuple=True)
    r = 3.0 + bu[u] + bi[i] + (U[u] * V[i]).sum(1) + noise * torch.randn(len(u), generator=g)
    df = pd.DataFrame({"userId": u.numpy(), "movieId": i.numpy(), "rating": r.numpy()})
    test = df.sample(frac=0.2, random_state=seed)
    train = df.drop(test.index)
    return train, test[test.userId.isin(set(train.userId)) & test.movieId.isin(set(train.movieId))]


def test_bpmf_gibbs_intervals_cover_held_out_ratings_at_their_nominal_rate():
    train, test = _simulated_mf()
    mf = BayesianMF(rank=2, rating_scale=(-100, 100))
    result = mf.fit(train, num_samples=300, warmup_steps=150, num_chains=1, progress=False, seed=0)
    assert result.engine == "mcmc" and "P" in result.to_arviz().posterior
    band = mf.predict_interval(test.userId.tolist(), test.movieId.tolist(), level=0.9, seed=0)
    inside = ((band["lower"] <= test.rating.to_numpy()) & (test.rating.to_numpy() <= band["upper"])).mean()
    assert 0.83 <= inside <= 0.96, inside
    # and the posterior mean beats the bias-free global mean by far (true noise sd 0.5)
    base = float(np.sqrt(((train.rating.mean() - test.rating) ** 2).mean()))
    assert mf.rmse(test) < 0.5 * base
    assert float(mf.draws_tau.rsqrt().mean()) == pytest.approx(0.5, rel=0.25)


def test_bpmf_svi_and_nuts_fit_the_same_program():
    train, test = _simulated_mf(20, 15, rank=1, seed=1)
    base = float(np.sqrt(((train.rating.mean() - test.rating) ** 2).mean()))
    svi = BayesianMF(rank=1, max_draws=30, rating_scale=(-100, 100))
    svi.fit(train, inference="svi", steps=300, batch_size=len(train), lr=0.05, progress=False, seed=0)
    assert svi.rmse(test) < 0.8 * base
    nuts = BayesianMF(rank=1, max_draws=30, rating_scale=(-100, 100))
    result = nuts.fit(train, kernel="nuts", num_samples=30, warmup_steps=30, num_chains=1, max_tree_depth=4,
                      progress=False, seed=0)
    assert result.engine == "mcmc" and len(nuts.draws_tau) == 30
    assert nuts.rmse(test) < 0.8 * base


def test_bpmf_fold_in_of_a_training_user_matches_its_ranking():
    df, _ = _taste_ratings(40, 16, 10)
    mf = BayesianMF(rank=2)
    mf.fit(df, num_samples=100, warmup_steps=50, num_chains=1, progress=False, seed=0)
    for user in range(5):
        history = df[df.userId == user]
        inside = mf.recommend(user, k=6)
        folded = mf.recommend(dict(zip(history.movieId, history.rating)), k=6)
        assert len(set(inside["item"]) & set(folded["item"])) >= 5
    pred = mf.predict(df.userId[:5].tolist(), df.movieId[:5].tolist())
    assert ((pred >= 1.0) & (pred <= 5.0)).all()  # clipped to the rating scale


# ------------------------------------------------------------------ RBM recommender
def test_recommender_rbm_learns_tastes_and_shares_the_interface():
    df, taste = _taste_ratings()
    test = df.groupby("userId").head(2)
    train = df.drop(test.index)
    rec = RecommenderRBM(num_hidden=8, k=1, k_max=3)
    rec.fit(train, epochs=60, batch_size=10, lr=0.05, progress=False, seed=0)
    global_mean = float(np.sqrt(((train["rating"].mean() - test["rating"]) ** 2).mean()))
    assert rec.rmse(test) < 0.7 * global_mean
    top = rec.recommend(0, k=3)
    assert list(top.columns) == ["item", "title", "score"]
    assert all(m % 2 == taste[0] for m in top["item"])
    assert not set(train[train.userId == 0].movieId) & set(top["item"])
    history = train[train.userId == 5]
    pd.testing.assert_frame_equal(rec.recommend(dict(zip(history.movieId, history.rating)), k=5), rec.recommend(5, k=5))
    assert all(m % 2 == 0 for m in rec.recommend({0: 5.0, 2: 5.0, 1: 1.0}, k=2)["item"])
    assert rec.predict(test.userId.tolist(), test.movieId.tolist()).shape == (len(test),)
    assert rec.score(test).shape == (len(test),)


def test_conditional_rbm_uses_implicit_pairs():
    df, taste = _taste_ratings(40, 20, 12)
    hidden = df.groupby("userId").head(3)  # rated, rating unknown to the model
    train = df.drop(hidden.index)
    rec = RecommenderRBM(num_hidden=8, conditional=True)
    rec.fit(train, epochs=20, batch_size=10, lr=0.05, implicit=hidden[["userId", "movieId"]], progress=False, seed=0)
    assert rec.D.abs().sum() > 0 and bool(rec.rated_mask[0, hidden.movieId.iloc[0]])
    with pytest.raises(ValueError, match="conditional"):
        RecommenderRBM(num_hidden=4).fit(train, epochs=1, implicit=hidden, progress=False)
    with pytest.raises(ValueError, match="k_max"):
        RecommenderRBM(k=3, k_max=2)


# ------------------------------------------------------------------ bad input and save / load
@pytest.mark.parametrize("make", [lambda: MultVAE(latent_dim=2, hidden=(), anneal_steps=5),
                                  lambda: BayesianMF(rank=1, max_draws=5, rating_scale=(1, 5)),
                                  lambda: RecommenderRBM(num_hidden=4)])
def test_bad_input_gets_clear_errors(make, tmp_path):
    df, _ = _taste_ratings(20, 10, 6)
    model = make()
    with pytest.raises(ValueError, match="not fitted"):
        model.recommend(0)
    fit = {"num_samples": 10, "warmup_steps": 5, "num_chains": 1} if isinstance(model, BayesianMF) else {"steps": 5}
    with pytest.raises(ValueError, match=r"pair \(0, .*\) appears 2 times"):
        make().fit(pd.concat([df.iloc[:1], df]), progress=False, **fit)
    with pytest.raises(KeyError, match="rating"):
        make().fit(df.drop(columns="rating"), progress=False, **fit)
    with pytest.raises(ValueError, match="missing values"):
        make().fit(df.assign(rating=np.nan), progress=False, **fit)
    if isinstance(model, BayesianMF):
        with pytest.raises(ValueError, match="outside the rating scale"):
            make().fit(df.assign(rating=df.rating + 3), progress=False, **fit)
    model.fit(df, progress=False, seed=0, **fit)
    with pytest.raises(KeyError, match="unknown user"):
        model.recommend(999)
    with pytest.raises(KeyError, match="unknown item"):
        model.recommend({12345: 4.0})
    with pytest.raises(ValueError, match="outside the rating scale"):
        model.recommend({1: 9.0})
    with pytest.raises(ValueError, match="k"):
        model.recommend(0, k=0)
    with pytest.raises(ValueError, match="appears twice|appears 2 times"):
        model.recommend(pd.DataFrame({"userId": [7, 7], "movieId": [1, 1], "rating": [4.0, 5.0]}))
    if model.models_ratings:
        with pytest.raises(KeyError, match="unknown user"):
            model.predict([999], [1])
        with pytest.raises(KeyError, match="unknown item"):
            model.predict([0], [12345])
        with pytest.raises(ValueError, match="equal lengths"):
            model.predict([0, 1], [1])
        fallback = model.predict([999, 0], [1, 12345], unknown="mean")
        assert torch.allclose(fallback, torch.full((2,), float(df.rating.mean())))
    else:
        with pytest.raises(ValueError, match="does not model rating values"):
            model.predict([0], [1])
    back = probgen.load(probgen.save(model, tmp_path / "rec.safetensors"))
    pd.testing.assert_frame_equal(back.recommend(0, k=4), model.recommend(0, k=4))
    pd.testing.assert_frame_equal(back.recommend({1: 4.0, 2: 2.0}, k=4), model.recommend({1: 4.0, 2: 2.0}, k=4))


def test_titles_come_with_the_recommendations():
    df, _ = _taste_ratings(20, 10, 6)
    df = df.assign(title=df.movieId.map(lambda m: f"Movie {m}"))
    vae = MultVAE(latent_dim=2, hidden=(), anneal_steps=5)
    vae.fit(df, steps=5, progress=False, seed=0)
    top = vae.recommend(0, k=3)
    assert [f"Movie {m}" for m in top["item"]] == top["title"].tolist()


# ------------------------------------------------------------------ bench
def test_bench_recommend_quick():
    from probgen.bench.recommend import run

    report = run(quick=True)
    table = report.tables["mean over seeds (fit_s: wall seconds per fit)"]
    for name in ("probgen MultVAE", "probgen MultDAE", "probgen BPMF-gibbs", "probgen RBM", "surprise SVD++",
                 "surprise KNNBaseline", "implicit BPR (32 factors)", "most popular (ratings count)"):
        assert name in table.index
    top = table[["precision@10", "recall@20", "NDCG@10"]].dropna()
    assert ((top >= 0) & (top <= 1)).all().all() and len(top) >= 9
    rmse = table["RMSE"].dropna()
    assert ((rmse > 0.3) & (rmse < 2.0)).all() and len(rmse) == 7
    # popularity is a real baseline: the fitted top-N models are not worse than random ranking
    assert table.loc["most popular (ratings count)", "precision@10"] > 0
