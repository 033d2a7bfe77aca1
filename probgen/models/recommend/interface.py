"""The recommending interface shared by every recommender family.

A recommender is fitted on a ratings table (one row per (user, item) pair, a rating column, and
optionally a title column) and then answers:

* ``recommend(user_ratings, k=10, exclude_seen=True)``: a DataFrame of ``item``, ``title`` and
  ``score`` (best first) for a user seen in training (by id) or for a new user given as a handful
  of ratings (``{item: rating}``, a Series, or a ratings DataFrame of one user): the new user is
  folded in by the fitted model, without retraining;
* ``predict(users, items)``: expected ratings of (user, item) pairs, for families that model
  ratings (``models_ratings``);
* ``scores(users)``: the ranking score of every item for known users (what ``recommend`` ranks).

Input is checked here, at the boundary: missing columns, NaN, a (user, item) pair given twice,
ratings outside the model's rating scale, unknown users or items: a ``ValueError`` / ``KeyError``
that names the argument.
"""

from __future__ import annotations

__all__ = ["Recommender", "ratings_frame"]

from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from ...core.checks import check_positive, unknown_key


def _plain(x: Any) -> Any:
    """NumPy scalars to Python ones (JSON-safe ids)."""
    return x.item() if isinstance(x, np.generic) else x


def ratings_frame(data: Any, columns: Sequence[str], name: str = "data", need_rating: bool = True,
                  allow_empty: bool = False) -> pd.DataFrame:
    """Check a ratings table and return its (user, item[, rating]) columns.

    Raises ``ValueError`` for a non-DataFrame, an empty table, missing values, non-numeric or
    infinite ratings and a (user, item) pair given twice; ``KeyError`` for a missing column.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"userId": [1, 1], "movieId": [5, 5], "rating": [4.0, 3.0]})
        >>> ratings_frame(df, ("userId", "movieId", "rating"))
        Traceback (most recent call last):
        ...
        ValueError: data: the (user, item) pair (1, 5) appears 2 times; give each pair once
    """
    user_col, item_col, rating_col = columns[:3]
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"{name}: expected a DataFrame with columns {list(columns[:3])}, got {type(data).__name__}")
    cols = [user_col, item_col, rating_col] if need_rating else [user_col, item_col]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"{name}: missing column(s) {missing}; expected {cols} (set user_col/item_col/rating_col)")
    if len(data) == 0 and not allow_empty:  # queries of zero rows answer zero rows (probgen.core.rows)
        raise ValueError(f"{name}: no ratings (an empty table)")
    df = data[cols]
    if df.isna().any().any():
        bad = df.columns[df.isna().any()].tolist()
        raise ValueError(f"{name}: contains missing values in column(s) {bad}")
    if need_rating:
        r = pd.to_numeric(df[rating_col], errors="coerce")
        if r.isna().any() or not np.isfinite(r.to_numpy(dtype=float)).all():
            bad = df[rating_col][r.isna() | ~np.isfinite(r.fillna(0).to_numpy(dtype=float))].iloc[0]
            raise ValueError(f"{name}: ratings must be finite numbers, got {bad!r}")
        df = df.assign(**{rating_col: r.astype(float)})
    dup = df.duplicated([user_col, item_col], keep=False)
    if dup.any():
        u, i = df[user_col][dup].iloc[0], df[item_col][dup].iloc[0]
        count = int(((df[user_col] == u) & (df[item_col] == i)).sum())
        raise ValueError(f"{name}: the (user, item) pair ({_plain(u)!r}, {_plain(i)!r}) appears {count} times; "
                         "give each pair once")
    return df


def _sorted_ids(column: pd.Series, what: str, name: str) -> list:
    """The distinct ids of a column, sorted; ``ValueError`` when they mix kinds (numbers and text)."""
    try:
        return sorted(_plain(v) for v in column.unique())
    except TypeError:
        raise ValueError(f"{name}: the {what} ids mix kinds (numbers and text, say); use one kind of id") from None


class Recommender:
    """Mixin giving a ``probgen.Model`` the recommending interface (see the module docstring).

    A family calls ``_init_recommender`` in ``__init__`` and ``_fit_catalog(data)`` at the start
    of ``fit`` (it checks the table, builds the user / item vocabularies and titles, and keeps
    the training ratings, which ``recommend`` needs to leave out what a user has seen), and
    implements ``_scores_known(user_idx)`` (scores of every item for known users, shape
    (n, items)) and ``_scores_new(item_idx, ratings)`` (fold-in of one new user, shape (items,)).
    Families that model ratings set ``models_ratings = True`` and implement
    ``_predict_idx(user_idx, item_idx)``.
    """

    models_ratings: ClassVar[bool] = False

    # --------------------------------------------------------------- catalog
    def _init_recommender(self, user_col: str, item_col: str, rating_col: str, title_col: str | None,
                          rating_scale: Sequence[float] | None) -> None:
        for arg, value in (("user_col", user_col), ("item_col", item_col), ("rating_col", rating_col)):
            if not isinstance(value, str):
                raise ValueError(f"{arg}: expected a column name, got {value!r}")
        if rating_scale is not None:
            if (not isinstance(rating_scale, (list, tuple)) or len(rating_scale) != 2
                    or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in rating_scale)
                    or not rating_scale[0] < rating_scale[1]):
                raise ValueError(f"rating_scale: expected (lowest, highest) with lowest < highest, got {rating_scale!r}")
        self.columns = (user_col, item_col, rating_col)
        self.title_col = title_col
        self._fixed_scale = None if rating_scale is None else (float(rating_scale[0]), float(rating_scale[1]))
        self._set_catalog([], [], None, self._fixed_scale or (0.0, 0.0), [])

    def _set_catalog(self, users: list, items: list, titles: list | None, scale: Sequence[float],
                     levels: list, n_train: int = 0) -> None:
        self.users, self.items = list(users), list(items)
        self.titles = None if titles is None else [str(t) for t in titles]
        self.rating_scale = (float(scale[0]), float(scale[1]))
        self.levels = [float(v) for v in levels]
        self._user_index = {u: j for j, u in enumerate(self.users)}
        self._item_index = {m: j for j, m in enumerate(self.items)}
        # the training ratings, sorted by user (what each user has seen; fold-in of known users)
        self.register_buffer("train_user", torch.zeros(n_train, dtype=torch.long))
        self.register_buffer("train_item", torch.zeros(n_train, dtype=torch.long))
        self.register_buffer("train_rating", torch.zeros(n_train))

    def _catalog_state(self) -> dict:
        return {"users": self.users, "items": self.items, "titles": self.titles, "rating_scale": list(self.rating_scale),
                "levels": self.levels, "n_train": int(len(self.train_user))}

    def _restore_catalog(self, state: dict) -> None:
        self._set_catalog(state.get("users", []), state.get("items", []), state.get("titles"),
                          state.get("rating_scale", (0.0, 0.0)), state.get("levels", []), int(state.get("n_train", 0)))

    @property
    def fitted(self) -> bool:
        return bool(self.items)

    def _require_fitted(self, what: str) -> None:
        super()._require_fitted(what, self.fitted, "call fit(ratings) first")  # probgen.Model's NotFittedError

    def _fit_catalog(self, data: Any, name: str = "data") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Check the training table, set the vocabularies, keep the ratings; returns (user, item, rating)."""
        df = ratings_frame(data, self.columns, name)
        ucol, icol, rcol = self.columns
        r = df[rcol].to_numpy(dtype=float)
        if self._fixed_scale is not None:
            lo, hi = self._fixed_scale
            bad = (r < lo) | (r > hi)
            if bad.any():
                raise ValueError(f"{name}: rating {r[bad][0]!r} is outside the rating scale [{lo}, {hi}] "
                                 "(rating_scale=...)")
        scale = self._fixed_scale or (float(r.min()), float(r.max()))
        users, items = _sorted_ids(df[ucol], "user", name), _sorted_ids(df[icol], "item", name)
        titles = None
        if self.title_col and isinstance(data, pd.DataFrame) and self.title_col in data.columns:
            by_item = data.drop_duplicates(icol).set_index(icol)[self.title_col]
            titles = [("" if pd.isna(by_item.get(i)) else str(by_item.get(i))) for i in items]
        order = np.lexsort((df[icol].map({i: j for j, i in enumerate(items)}).to_numpy(),
                            df[ucol].map({u: j for j, u in enumerate(users)}).to_numpy()))
        df = df.iloc[order]
        self._set_catalog(users, items, titles, scale, sorted(set(r.tolist())), len(df))
        self.train_user = self._lookup(df[ucol], "user", name)
        self.train_item = self._lookup(df[icol], "item", name)
        self.train_rating = torch.tensor(df[rcol].to_numpy(dtype=np.float32))
        return self.train_user, self.train_item, self.train_rating

    def _lookup(self, values: Any, kind: str, name: str) -> torch.Tensor:
        index = self._user_index if kind == "user" else self._item_index
        values = pd.Series(np.asarray(values, dtype=object) if not isinstance(values, pd.Series) else values)
        out = values.map(index).fillna(-1).to_numpy(dtype=np.int64)
        if (out < 0).any():
            bad = _plain(values[out < 0].iloc[0])
            valid = self.users if kind == "user" else self.items
            raise unknown_key(f"{kind} (in {name}; the model knows {len(valid)} {kind}s from training)", bad, valid[:40])
        return torch.from_numpy(out.copy())

    def _check_scale(self, ratings: np.ndarray, name: str) -> None:
        lo, hi = self.rating_scale
        bad = ~np.isfinite(ratings) | (ratings < lo) | (ratings > hi)
        if bad.any():
            raise ValueError(f"{name}: rating {ratings[bad][0]!r} is outside the rating scale [{lo}, {hi}] the model "
                             "was fitted on")

    def seen(self, user_idx: int) -> torch.Tensor:
        """Item indices the known user ``user_idx`` (an index into ``users``) rated in training."""
        lo, hi = torch.searchsorted(self.train_user, torch.tensor([user_idx, user_idx + 1]))
        return self.train_item[lo:hi]

    def _user_history(self, user_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = torch.searchsorted(self.train_user, torch.tensor([user_idx, user_idx + 1]))
        return self.train_item[lo:hi], self.train_rating[lo:hi]

    # ------------------------------------------------------------------ hooks
    def _scores_known(self, user_idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _scores_new(self, item_idx: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _predict_idx(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------ public API
    def scores(self, users: Any = None) -> torch.Tensor:
        """Ranking scores of every item (columns in the order of ``items``) for known users
        (all of them when ``users`` is None), as ``recommend`` ranks them (seen items included)."""
        self._require_fitted("scores")
        idx = (torch.arange(len(self.users)) if users is None
               else self._lookup(users if isinstance(users, (list, tuple, np.ndarray, pd.Series)) else [users],
                                 "user", "users"))
        with torch.no_grad():
            return torch.cat([self._scores_known(part) for part in idx.split(256)])

    def _new_profile(self, user_ratings: Any) -> tuple[torch.Tensor, torch.Tensor]:
        ucol, icol, rcol = self.columns
        if isinstance(user_ratings, pd.DataFrame):
            df = ratings_frame(user_ratings, self.columns, "user_ratings")
            if df[ucol].nunique() != 1:
                raise ValueError(f"user_ratings: expected the ratings of one user, got {df[ucol].nunique()} users")
            items, ratings = df[icol].tolist(), df[rcol].to_numpy(dtype=float)
        elif isinstance(user_ratings, (dict, pd.Series)):
            items = list(user_ratings.keys())
            ratings = pd.to_numeric(pd.Series(list(user_ratings.values()), dtype=object), errors="coerce").to_numpy(dtype=float)
            if len(set(map(_plain, items))) != len(items):
                raise ValueError("user_ratings: an item appears twice; give each item once")
        else:
            raise ValueError("user_ratings: expected a known user id, {item: rating}, a Series indexed by item or a "
                             f"ratings DataFrame of one user, got {type(user_ratings).__name__}")
        if len(items) == 0:
            raise ValueError("user_ratings: no ratings; give at least one (item, rating)")
        self._check_scale(ratings, "user_ratings")
        return self._lookup(items, "item", "user_ratings"), torch.tensor(ratings, dtype=torch.float32)

    def recommend(self, user_ratings: Any, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """The ``k`` best items for one user: a DataFrame with ``item``, ``title`` and ``score``, best first.

        ``user_ratings`` is the id of a user seen in training (the fitted model's own view of them),
        or a new user's ratings, ``{item: rating}`` / a Series indexed by item / a ratings DataFrame
        of one user, folded into the fitted model without retraining. ``exclude_seen`` leaves out
        the items the user has rated.
        """
        self._require_fitted("recommend")
        check_positive("k", k, integer=True)
        if not isinstance(exclude_seen, bool):
            raise ValueError(f"exclude_seen: expected True or False, got {exclude_seen!r}")
        with torch.no_grad():
            if isinstance(user_ratings, (dict, pd.Series, pd.DataFrame)):
                item_idx, ratings = self._new_profile(user_ratings)
                score = self._scores_new(item_idx, ratings).clone()
                seen = item_idx
            else:
                if isinstance(user_ratings, (list, tuple, np.ndarray, set)):
                    raise ValueError("user_ratings: expected one user id or one new user's ratings ({item: rating}); "
                                     "for many known users call scores(users)")
                j = self._lookup([user_ratings], "user", "user_ratings")
                score = self._scores_known(j)[0].clone()
                seen = self.seen(int(j[0]))
        score = score.double()
        if exclude_seen:
            score[seen] = -float("inf")
        top = torch.topk(score, min(int(k), int(torch.isfinite(score).sum()))).indices.tolist()
        return pd.DataFrame({"item": [self.items[i] for i in top],
                             "title": [self.titles[i] if self.titles else "" for i in top],
                             "score": [float(score[i]) for i in top]})

    def predict(self, users: Any, items: Any = None, unknown: str = "error") -> torch.Tensor:
        """Predicted ratings of (user, item) pairs: two equal-length sequences, or a DataFrame with the
        user and item columns. ``unknown="error"`` (default) raises ``KeyError`` for a user or item not
        seen in training; ``unknown="mean"`` predicts the training mean rating for such pairs."""
        if not self.models_ratings:
            raise ValueError(f"predict: {type(self).__name__} ranks items and does not model rating values; "
                             "use recommend() or scores()")
        self._require_fitted("predict")
        if unknown not in ("error", "mean"):
            raise ValueError(f"unknown: expected 'error' or 'mean', got {unknown!r}")
        if isinstance(users, pd.DataFrame) and items is None:
            df = ratings_frame(users, self.columns, "users", need_rating=False)
            users, items = df[self.columns[0]].tolist(), df[self.columns[1]].tolist()
        if items is None:
            raise ValueError("items: expected a sequence of item ids as long as users (or pass one DataFrame)")
        users = list(users) if not isinstance(users, (str, bytes)) and hasattr(users, "__len__") else [users]
        items = list(items) if not isinstance(items, (str, bytes)) and hasattr(items, "__len__") else [items]
        if len(users) != len(items):
            raise ValueError(f"users, items: expected equal lengths, got {len(users)} and {len(items)}")
        if unknown == "error":
            u, i = self._lookup(users, "user", "users"), self._lookup(items, "item", "items")
            with torch.no_grad():
                return self._predict_idx(u, i)
        u = torch.tensor([self._user_index.get(_plain(v), -1) for v in users])
        i = torch.tensor([self._item_index.get(_plain(v), -1) for v in items])
        out = torch.full((len(u),), float(self.train_rating.mean()))
        ok = (u >= 0) & (i >= 0)
        if ok.any():
            with torch.no_grad():
                out[ok] = self._predict_idx(u[ok], i[ok]).float()
        return out

    def rmse(self, ratings: pd.DataFrame) -> float:
        """Root mean squared error of ``predict`` on a ratings table of known users and items."""
        df = ratings_frame(ratings, self.columns, "ratings")
        pred = self.predict(df[self.columns[0]].tolist(), df[self.columns[1]].tolist())
        return float(((pred.double() - torch.tensor(df[self.columns[2]].to_numpy())) ** 2).mean().sqrt())

    # -------------------------------------------------------------------- tour
    @classmethod
    def _tour_setup(cls, quick: bool) -> tuple[Any, dict]:
        """(an unfitted model, fit options) for the tour; each family sets its own."""
        raise NotImplementedError

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Fit on the 200 most active MovieLens users x 600 most rated movies; precision@10 on held-out
        ratings against the most popular movies, and a cold-start list from five ratings."""
        import os

        import matplotlib.pyplot as plt

        import probgen
        from ...bench.recommend import _Catalog, per_user_split, topn_metrics
        from ...gallery import TourSection, demo_source

        model, options = cls._tour_setup(quick)

        def demo():
            ml = probgen.datasets.load("movielens")
            small = ml[ml.userId.isin(ml.userId.value_counts().index[:200])
                       & ml.movieId.isin(ml.movieId.value_counts().index[:600])]
            train, test = per_user_split(small[["userId", "movieId", "rating", "title"]])
            model.fit(train, progress=False, seed=0, **options)
            ids = small.drop_duplicates("title").set_index("title")["movieId"]
            five = {"Star Wars: Episode IV - A New Hope": 5.0, "Alien": 4.5, "Terminator, The": 4.5,
                    "Matrix, The": 5.0, "Titanic": 1.0}
            cold = model.recommend({int(ids[t]): r for t, r in five.items()}, k=5)  # a new user, no retraining
            return train, test, cold

        train, test, cold = demo()
        cat = _Catalog(train)
        ours = topn_metrics(model.scores().numpy(), cat, test)
        counts = train.groupby("movieId").size().reindex(cat.items).to_numpy(dtype=float)
        popular = topn_metrics(np.tile(counts, (len(cat.users), 1)), cat, test)
        fig, ax = plt.subplots(figsize=(5, 3.2))
        names = list(ours)
        pos = np.arange(len(names))
        ax.bar(pos - 0.2, [popular[n] for n in names], 0.4, label="most popular movies", color="C7")
        ax.bar(pos + 0.2, [ours[n] for n in names], 0.4, label=cls.__name__)
        ax.set_xticks(pos, names)
        ax.set(ylabel="held-out accuracy", title="top-N on 20% held-out ratings (200 users, 600 movies)")
        ax.legend(fontsize=7)
        path = os.path.join(out_dir, f"{cls.family}.png")
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        figures = {"precision@10": f"{ours['precision@10']:.3f} (most popular: {popular['precision@10']:.3f})",
                   "NDCG@10": f"{ours['NDCG@10']:.3f} (most popular: {popular['NDCG@10']:.3f})"}
        good = ours["NDCG@10"] > popular["NDCG@10"]
        if cls.models_ratings:  # a rating model's mark: below the regularised user + item bias baseline
            from ...bench.recommend import bias_baseline

            rmse = model.rmse(test[["userId", "movieId", "rating"]])
            base = float(np.sqrt(np.mean((bias_baseline(train)[0](test["userId"], test["movieId"])
                                          - test["rating"].to_numpy()) ** 2)))
            figures["held-out RMSE"] = f"{rmse:.3f} (user + item biases: {base:.3f})"
            good = rmse < base
        return TourSection(cls.family, f"{cls.__name__} on a MovieLens subset (200 users x 600 movies)",
                           [(path, "precision@10, recall@20 and NDCG@10 on held-out ratings (relevant: 4 stars or "
                                   "more), ranking every unrated movie, against recommending the most popular")],
                           figures, demo_source(demo), "works" if good else "limited",
                           note="" if good else "trails the simple baseline at this budget; see probgen bench recommend",
                           text="cold start from five ratings (Star Wars, Alien, The Terminator, The Matrix liked, "
                                "Titanic not):\n" + "\n".join(cold["title"]))

