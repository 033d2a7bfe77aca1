"""RBM collaborative filtering: softmax visible units for the items each user rated (Salakhutdinov et al. 2007)."""

from __future__ import annotations

__all__ = ["RecommenderRBM"]

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...core.base import ContractCase, Model
from ...core.checks import check_positive, unknown_key
from ...core.result import FitResult
from ...core.random import check_seed
from ...core.engines import implements
from .rbm import _bernoulli


class RecommenderRBM(Model):
    r"""An RBM per user over the items that user rated, all users sharing the weights.

    Every item has a softmax visible unit over the rating levels (``K`` of them);
    a user's RBM has only the units of the items they rated, so missing ratings are
    simply absent. Trained by CD-k on minibatches of users (engine ``"mcmc"``),
    with the positive and negative statistics gathered over the rated (user, item)
    pairs only. Predictions use the mean-field pass of the paper: p(h | the user's
    ratings), then a softmax per item; the predicted rating is the expectation.

    Arguments:
        n_hidden: binary hidden units (features shared by all users).
        k: Gibbs steps of CD-k.
        shared_levels: tie part of the weights across items: the weight of (item, level) to the
            hidden units is ``W[item, level] + U[level]``. A hidden unit can then learn a user's
            rating scale ("rates everything high") once for all items, which per-item weights of
            rarely rated items cannot (most MovieLens items have a handful of ratings).
        momentum: SGD momentum.
        weight_decay: L2 penalty on the weights.
        user_col, item_col, rating_col: the DataFrame's column names.

    References:
        Salakhutdinov, Mnih & Hinton, Restricted Boltzmann machines for collaborative
        filtering, ICML 2007.

    Example:
        >>> import pandas as pd, probgen
        >>> df = pd.DataFrame({"userId": [1, 1, 2, 2, 3, 3], "movieId": [10, 20, 10, 30, 20, 30],
        ...                    "rating": [5.0, 1.0, 4.0, 2.0, 1.0, 2.0]})
        >>> rec = probgen.models.RecommenderRBM(n_hidden=4)
        >>> _ = rec.fit(df, epochs=5, progress=False, seed=0)
        >>> rec.recommend(1, k=1)["movieId"].tolist()
        [30]
    """

    family = "recommender_rbm"
    default_inference = "mcmc"
    log_prob_kind = None
    log_prob_alternative = "score(ratings) (the surprise -log p(rating | the user's other ratings)) or rmse(ratings)"

    def __init__(self, n_hidden: int = 100, k: int = 1, momentum: float = 0.9, weight_decay: float = 0.001,
                 user_col: str = "userId", item_col: str = "movieId", rating_col: str = "rating",
                 shared_levels: bool = False):
        check_positive("n_hidden", n_hidden, integer=True)
        check_positive("k", k, integer=True)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        check_positive("weight_decay", weight_decay, strict=False)
        super().__init__()
        self.n_hidden, self.k = int(n_hidden), int(k)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        if not isinstance(shared_levels, bool):
            raise ValueError(f"shared_levels: expected True or False, got {shared_levels!r}")
        self.shared_levels = shared_levels
        self.columns = (user_col, item_col, rating_col)
        self._set_vocab([], [], [])
        self.register_load_state_dict_post_hook(lambda module, keys: module._reindex())

    # ------------------------------------------------------------ state
    def _set_vocab(self, users: list, items: list, levels: list) -> None:
        self.users, self.items, self.levels = list(users), list(items), [float(x) for x in levels]
        u, i, k, h = len(users), len(items), len(levels), self.n_hidden
        self.register_buffer("W", torch.zeros(i * k, h))
        self.register_buffer("b", torch.zeros(i * k))
        self.register_buffer("c", torch.zeros(h))
        self.register_buffer("U", torch.zeros(k, h))  # weights shared by all items per level (shared_levels)
        # the training ratings as level indices (-1 = not rated): recommendations for known users need them
        self.register_buffer("train_levels", torch.full((u, i), -1, dtype=torch.int8))
        object.__setattr__(self, "_state", {})
        self._reindex()

    def _reindex(self) -> None:
        self._user_index = {u: j for j, u in enumerate(self.users)}
        self._item_index = {m: j for j, m in enumerate(self.items)}
        self._level_index = {r: j for j, r in enumerate(self.levels)}

    def get_state_json(self) -> dict:
        return {"users": self.users, "items": self.items, "levels": self.levels}

    def set_state_json(self, state: dict) -> None:
        self._set_vocab(state.get("users", []), state.get("items", []), state.get("levels", []))

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def _require_fitted(self, what: str) -> None:
        super()._require_fitted(what, bool(self.items), "call fit(ratings) first")

    # ------------------------------------------------------------ data
    def _frame(self, data: Any, name: str, need_rating: bool = True, allow_empty: bool = False) -> pd.DataFrame:
        if not isinstance(data, pd.DataFrame):
            raise ValueError(f"{name}: expected a DataFrame with columns {list(self.columns)}, got {type(data).__name__}")
        cols = list(self.columns if need_rating else self.columns[:2])
        missing = [c for c in cols if c not in data.columns]
        if missing:
            raise KeyError(f"{name}: missing column(s) {missing}; expected {cols} (set user_col/item_col/rating_col)")
        if len(data) == 0 and not allow_empty:
            raise ValueError(f"{name}: no ratings")
        df = data[cols]
        if df.isna().any().any():
            raise ValueError(f"{name}: contains missing values")
        return df

    def _triples(self, data: Any, name: str, allow_empty: bool = False) -> torch.Tensor:
        """(user index, item index, level index) rows for known users and items."""
        df = self._frame(data, name, allow_empty=allow_empty)
        return torch.stack([self._lookup(df[self.columns[0]], self._user_index, f"user (in {name})"),
                            self._lookup(df[self.columns[1]], self._item_index, f"item (in {name})"),
                            self._levels_of(df[self.columns[2]], name)], 1)

    def _lookup(self, values: pd.Series, index: dict, what: str) -> torch.Tensor:
        out = values.map(index)
        if out.isna().any():
            bad = values[out.isna()].iloc[0]
            raise unknown_key(what, bad, list(index)[:40])
        return torch.tensor(out.to_numpy(dtype=np.int64))

    def _levels_of(self, ratings: pd.Series, name: str) -> torch.Tensor:
        values = pd.to_numeric(ratings, errors="coerce").astype(float)
        out = values.map(self._level_index)
        if out.isna().any():
            bad = ratings[out.isna()].iloc[0]
            raise ValueError(f"{name}: rating {bad!r} is out of range; valid ratings are {self.levels}")
        return torch.tensor(out.to_numpy(dtype=np.int64))

    # ------------------------------------------------------------ training
    @implements("mcmc")
    def _fit_mcmc(self, data: Any, **options: Any) -> FitResult:
        """CD-k over minibatches of users; ``validation`` (ratings of the same users) is scored by RMSE."""
        from ...infer.mcmc import fit_mcmc

        df = self._frame(data, "data")
        ratings = pd.to_numeric(df[self.columns[2]], errors="coerce")
        if ratings.isna().any() or not np.isfinite(ratings).all():
            raise ValueError("data: ratings must be finite numbers")
        users = _sorted_ids(df[self.columns[0]], "user")
        items = _sorted_ids(df[self.columns[1]], "item")
        levels = sorted(ratings.unique().tolist())
        if len(levels) < 2:
            raise ValueError(f"data: need at least two distinct rating values, got {levels}")
        self._set_vocab([_plain(u) for u in users], [_plain(i) for i in items], levels)
        t = self._triples(df, "data")
        if len(torch.unique(t[:, 0] * len(items) + t[:, 1])) != len(t):
            raise ValueError("data: a user rated the same item twice")
        self.train_levels[t[:, 0], t[:, 1]] = t[:, 2].to(torch.int8)
        k = self.num_levels
        # visible biases: log frequency of each level per item (smoothed), as in the paper
        freq = torch.bincount(t[:, 1] * k + t[:, 2], minlength=len(items) * k).float().reshape(-1, k) + 0.5
        self.b = (freq / freq.sum(1, keepdim=True)).log().reshape(-1)
        g = torch.Generator().manual_seed(0 if check_seed(options.get("seed")) is None else int(options["seed"]))
        self.W = 0.01 * torch.randn(len(items) * k, self.n_hidden, generator=g)
        self.c = torch.zeros(self.n_hidden)
        self.U = torch.zeros(k, self.n_hidden)
        options.setdefault("lr", 0.01)
        options.setdefault("batch_size", 32)
        self._state.update(lr=float(check_positive("lr", options["lr"])), velocity=None, loss=None)
        validation = options.pop("validation", None)
        if validation is not None:
            validation = self._triples(validation, "validation")
        users_tensor = torch.arange(len(users), dtype=torch.float32)
        return fit_mcmc(self, users_tensor, validation=validation, **options)

    def _profiles(self, user_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rated pairs of these users: (row in the batch, item, level)."""
        levels = self.train_levels[user_idx]
        row, item = torch.nonzero(levels >= 0, as_tuple=True)
        return row, item, levels[row, item].long()

    def _hidden_prob(self, n: int, row: torch.Tensor, item: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        # Σ over the rated items of W[item, level, :] — a sparse product, as index_add over the pairs
        rows = self.W[item * self.num_levels + level]
        if self.shared_levels:
            rows = rows + self.U[level]
        act = torch.zeros(n, self.n_hidden, device=self.W.device).index_add_(0, row, rows)
        return torch.sigmoid(act + self.c)

    def _item_logits(self, h: torch.Tensor, row: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        k = self.num_levels
        w = self.W.reshape(-1, k, self.n_hidden)[item]  # (pairs, K, H)
        logits = self.b.reshape(-1, k)[item] + torch.einsum("pkh,ph->pk", w, h[row])
        return logits + h[row] @ self.U.T if self.shared_levels else logits

    def _all_item_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of every (item, level) given hidden values ``h`` (n, H): (n, items, K)."""
        logits = (self.b + h @ self.W.T).reshape(len(h), -1, self.num_levels)
        return logits + (h @ self.U.T)[:, None, :] if self.shared_levels else logits

    def mcmc_step(self, batch: tuple[torch.Tensor, ...], step: int) -> dict:
        """One CD-k update on a minibatch of users (called by the mcmc engine)."""
        users = batch[0].long()
        n, k = len(users), self.num_levels
        row, item, level = self._profiles(users)
        ph0 = self._hidden_prob(n, row, item, level)
        ph, lv = ph0, level
        for _ in range(self.k):
            logits = self._item_logits(_bernoulli(ph), row, item)
            lv = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
            ph = self._hidden_prob(n, row, item, lv)
        grad_w = torch.zeros_like(self.W)
        grad_w.index_add_(0, item * k + level, ph0[row]).index_add_(0, item * k + lv, ph[row], alpha=-1.0)
        grad_w.div_(n).add_(self.W, alpha=-self.weight_decay)
        grad_b = (torch.bincount(item * k + level, minlength=len(self.b))
                  - torch.bincount(item * k + lv, minlength=len(self.b))).float() / n
        grad_c = ph0.mean(0) - ph.mean(0)
        grads, params = [grad_w, grad_b, grad_c], [self.W, self.b, self.c]
        if self.shared_levels:
            # the same statistics summed over items per level, averaged over the rated pairs rather
            # than the users: U enters every pair, and a per-user average (a sum over ~100 pairs)
            # made CD diverge on MovieLens after 50-80 epochs
            grad_u = torch.zeros_like(self.U).index_add_(0, level, ph0[row]).index_add_(0, lv, ph[row], alpha=-1.0)
            grads.append(grad_u.div_(len(row)).add_(self.U, alpha=-self.weight_decay))
            params.append(self.U)
        state = self._state
        if state.get("velocity") is None:
            state["velocity"] = [torch.zeros_like(g) for g in grads]
        for vel, g, param in zip(state["velocity"], grads, params):
            param.add_(vel.mul_(self.momentum).add_(g, alpha=state["lr"]))
        # recorded loss: RMSE of the one-step reconstruction of the batch's own ratings
        levels = torch.tensor(self.levels, device=self.W.device)
        expected = torch.softmax(self._item_logits(ph0, row, item), -1) @ levels
        return {"loss": float(((expected - levels[level]) ** 2).mean().sqrt())}

    def validation_loss(self, triples: torch.Tensor) -> float:
        """RMSE of the predicted ratings on held-out (user, item, level) triples."""
        t = triples.long()
        pred = self._predict_idx(t[:, 0], t[:, 1])
        truth = torch.tensor(self.levels, device=self.W.device)[t[:, 2]]
        return float(((pred - truth) ** 2).mean().sqrt())

    # ------------------------------------------------------------ prediction
    def _level_probs(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """p(level | user's training ratings) for (user, item) pairs (mean-field hidden units)."""
        uniq, inv = torch.unique(user_idx, return_inverse=True)
        with torch.no_grad():
            ph = self._hidden_prob(len(uniq), *self._profiles(uniq))
            return torch.softmax(self._item_logits(ph, inv, item_idx), -1)

    def _predict_idx(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        levels = torch.tensor(self.levels, device=self.W.device)
        return self._level_probs(user_idx, item_idx) @ levels

    def predict(self, pairs: pd.DataFrame) -> torch.Tensor:
        """Expected rating of each (user, item) row, for users and items seen in training."""
        self._require_fitted("predict")
        df = self._frame(pairs, "pairs", need_rating=False)
        u = self._lookup(df[self.columns[0]], self._user_index, "user (in pairs)")
        i = self._lookup(df[self.columns[1]], self._item_index, "item (in pairs)")
        return self._predict_idx(u, i)

    def rmse(self, ratings: pd.DataFrame) -> float:
        """Root mean squared error of ``predict`` against the ``ratings`` given."""
        self._require_fitted("rmse")
        t = self._triples(ratings, "ratings")
        return self.validation_loss(t)

    def score(self, ratings: pd.DataFrame) -> torch.Tensor:
        """Surprise of each rating, -log p(rating | the user's training ratings) (higher = more anomalous)."""
        self._require_fitted("score")
        t = self._triples(ratings, "ratings", allow_empty=True)
        if not len(t):  # the empty-batch rule (probgen.core.rows)
            return torch.zeros(0, dtype=self.W.dtype)
        probs = self._level_probs(t[:, 0], t[:, 1])
        return -probs[torch.arange(len(t)), t[:, 2]].log()

    def _new_user_hidden(self, ratings: dict) -> torch.Tensor:
        items, levels = [], []
        for item, r in ratings.items():
            item = _plain(item)
            if item not in self._item_index:
                raise unknown_key("item (in user_ratings)", item, self.items[:40])
            if float(r) not in self._level_index:
                raise ValueError(f"user_ratings: rating {r!r} for item {item!r} is out of range; valid: {self.levels}")
            items.append(self._item_index[item])
            levels.append(self._level_index[float(r)])
        item_t, level_t = torch.tensor(items, dtype=torch.long), torch.tensor(levels, dtype=torch.long)
        return self._hidden_prob(1, torch.zeros(len(items), dtype=torch.long), item_t, level_t), item_t

    def recommend(self, user_ratings: Any, k: int = 10, exclude_rated: bool = True) -> pd.DataFrame:
        """The ``k`` unrated items with the highest predicted rating, for one user or many.

        ``user_ratings`` is a known user id (their training ratings are used), a list
        of user ids, a dict ``{item: rating}`` for a new user, or a DataFrame of
        ratings (each user in it is treated as a new profile).
        Returns a DataFrame: user, item, predicted rating, rank.
        """
        self._require_fitted("recommend")
        check_positive("k", k, integer=True)
        ucol, icol, _ = self.columns
        profiles: list[tuple[Any, torch.Tensor, torch.Tensor]] = []
        with torch.no_grad():
            if isinstance(user_ratings, dict):
                ph, rated = self._new_user_hidden(user_ratings)
                profiles.append(("new user", ph, rated))
            elif isinstance(user_ratings, pd.DataFrame):
                df = self._frame(user_ratings, "user_ratings")
                for user, group in df.groupby(ucol, sort=True):
                    ph, rated = self._new_user_hidden(dict(zip(group[icol], group[self.columns[2]])))
                    profiles.append((_plain(user), ph, rated))
            else:
                ids = user_ratings if isinstance(user_ratings, (list, tuple, np.ndarray, pd.Series)) else [user_ratings]
                for user in ids:
                    user = _plain(user)
                    if user not in self._user_index:
                        raise unknown_key("user (in user_ratings)", user, self.users[:40])
                    j = torch.tensor([self._user_index[user]])
                    ph = self._hidden_prob(1, *self._profiles(j))
                    profiles.append((user, ph, torch.nonzero(self.train_levels[j[0]] >= 0).flatten()))
            levels = torch.tensor(self.levels, device=self.W.device)
            rows = []
            for user, ph, rated in profiles:
                pred = torch.softmax(self._all_item_logits(ph)[0], -1) @ levels
                if exclude_rated:
                    pred[rated] = -float("inf")
                top = torch.topk(pred, min(k, int(torch.isfinite(pred).sum()))).indices
                rows += [{ucol: user, icol: self.items[i], "predicted_rating": float(pred[i]), "rank": r + 1}
                         for r, i in enumerate(top.tolist())]
        return pd.DataFrame(rows, columns=[ucol, icol, "predicted_rating", "rank"])

    def _sample(self, n: int, steps: int = 50) -> torch.Tensor:
        """Ratings of ``n`` synthetic users for every item (a Gibbs chain of ``steps`` sweeps)."""
        self._require_fitted("sample")
        check_positive("steps", steps, integer=True)
        k = self.num_levels
        h = _bernoulli(torch.full((n, self.n_hidden), 0.5, device=self.W.device))
        for _ in range(steps):
            probs = torch.softmax(self._all_item_logits(h), -1)
            v = torch.multinomial(probs.reshape(-1, k), 1).reshape(n, -1)
            onehot = F.one_hot(v, k).float()
            act = onehot.reshape(n, -1) @ self.W
            if self.shared_levels:
                act = act + onehot.sum(1) @ self.U
            h = _bernoulli(torch.sigmoid(act + self.c))
        return torch.tensor(self.levels, device=self.W.device)[v]

    # ------------------------------------------------------------ examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = np.random.Generator(np.random.PCG64(0))
        taste = g.integers(0, 2, 30)
        rows = [(u, m, float(5 if (m % 2) == taste[u] else 1) if g.random() > 0.1 else 3.0)
                for u in range(30) for m in range(12) if g.random() < 0.6]
        df = pd.DataFrame(rows, columns=["userId", "movieId", "rating"])
        return ContractCase(cls(n_hidden=6), df, {"epochs": 3, "batch_size": 10}, sample_kwargs={"steps": 5},
                            log_prob_data=df.iloc[:5])


def _plain(x: Any) -> Any:
    """NumPy scalars to Python ones (JSON-safe ids)."""
    return x.item() if isinstance(x, np.generic) else x


def _sorted_ids(column: pd.Series, what: str) -> list:
    """The distinct ids of a column, sorted; ``ValueError`` when they mix kinds (numbers and text)."""
    try:
        return sorted(column.unique().tolist())
    except TypeError:
        raise ValueError(f"data: the {what} ids mix kinds (numbers and text, say); use one kind of id") from None
