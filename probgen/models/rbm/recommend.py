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
from ..recommend.interface import Recommender
from .rbm import _bernoulli


class RecommenderRBM(Recommender, Model):
    r"""An RBM per user over the items that user rated, all users sharing the weights.

    Every item has a softmax visible unit over the rating levels (``K`` of them, the distinct
    training ratings);
    a user's RBM has only the units of the items they rated, so missing ratings are
    simply absent. Trained by CD-k on minibatches of users (engine ``"mcmc"``),
    with the positive and negative statistics gathered over the rated (user, item)
    pairs only. Predictions use the mean-field pass of the paper: p(h | the user's
    ratings), then a softmax per item; the predicted rating is the expectation.

    Arguments:
        num_hidden: binary hidden units (features shared by all users).
        k: Gibbs steps of CD-k.
        shared_levels: tie part of the weights across items: the weight of (item, level) to the
            hidden units is ``W[item, level] + U[level]``. A hidden unit can then learn a user's
            rating scale ("rates everything high") once for all items, which per-item weights of
            rarely rated items cannot (most MovieLens items have a handful of ratings).
        momentum: SGD momentum.
        weight_decay: L2 penalty on the weights.
        k_max: CD-k schedule: the number of Gibbs steps grows from ``k`` to ``k_max`` over training
            (in equal stages per epoch; the paper raised T from 1 to 9 as learning converged).
        conditional: add the paper's conditional term: a weight ``D[item]`` from "the user rated
            this item" to the hidden units, for every item the user rated in training. On a
            protocol where only rated items are visible this duplicates a level-independent part
            of ``W``; it carries information when ``fit(..., implicit=pairs)`` names (user, item)
            pairs known to be rated whose rating is unknown (the Netflix qualifying set).
        user_col, item_col, rating_col, title_col: the DataFrame's column names.
        rating_scale: (lowest, highest) allowed rating; ``None``: the training range.

    References:
        Salakhutdinov, Mnih & Hinton, Restricted Boltzmann machines for collaborative
        filtering, ICML 2007.

    Example:
        >>> import pandas as pd, probgen
        >>> df = pd.DataFrame({"userId": [1, 1, 2, 2, 3, 3], "movieId": [10, 20, 10, 30, 20, 30],
        ...                    "rating": [5.0, 1.0, 4.0, 2.0, 1.0, 2.0]})
        >>> rec = probgen.models.RecommenderRBM(num_hidden=4)
        >>> _ = rec.fit(df, epochs=5, progress=False, seed=0)
        >>> rec.recommend(1, k=1)["item"].tolist()
        [30]
    """

    family = "recommender_rbm"
    renamed_config_keys = {"n_hidden": "num_hidden"}
    default_inference = "mcmc"
    log_prob_kind = None
    log_prob_alternative = "score(ratings) (the surprise -log p(rating | the user's other ratings)) or rmse(ratings)"
    models_ratings = True

    def __init__(self, num_hidden: int = 100, k: int = 1, momentum: float = 0.9, weight_decay: float = 0.001,
                 user_col: str = "userId", item_col: str = "movieId", rating_col: str = "rating",
                 shared_levels: bool = False, k_max: int | None = None, conditional: bool = False,
                 title_col: str | None = "title", rating_scale: Sequence[float] | None = None):
        check_positive("num_hidden", num_hidden, integer=True)
        check_positive("k", k, integer=True)
        if k_max is not None and (check_positive("k_max", k_max, integer=True) < k):
            raise ValueError(f"k_max: expected at least k={k}, got {k_max!r}")
        if not isinstance(conditional, bool):
            raise ValueError(f"conditional: expected True or False, got {conditional!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        check_positive("weight_decay", weight_decay, strict=False)
        super().__init__()
        self.num_hidden, self.k = int(num_hidden), int(k)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        if not isinstance(shared_levels, bool):
            raise ValueError(f"shared_levels: expected True or False, got {shared_levels!r}")
        self.shared_levels = shared_levels
        self.k_max, self.conditional = int(k_max or k), conditional
        self._init_recommender(user_col, item_col, rating_col, title_col, rating_scale)
        self._alloc()
        self.register_load_state_dict_post_hook(lambda module, keys: module._after_load())

    # ------------------------------------------------------------ state
    def _alloc(self, implicit: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        u, i, k, h = len(self.users), len(self.items), len(self.levels), self.num_hidden
        self.register_buffer("W", torch.zeros(i * k, h))
        self.register_buffer("b", torch.zeros(i * k))
        self.register_buffer("c", torch.zeros(h))
        self.register_buffer("U", torch.zeros(k, h))  # weights shared by all items per level (shared_levels)
        self.register_buffer("D", torch.zeros(i if self.conditional else 0, h))  # "rated" weights (conditional)
        # the training ratings as level indices (-1 = not rated): the RBM's visible units per user
        self.register_buffer("train_levels", torch.full((u, i), -1, dtype=torch.int8))
        # which items each user is known to have rated (conditional RBM): training ratings + implicit pairs
        self.register_buffer("rated_mask", torch.zeros((u, i) if self.conditional else (0, 0), dtype=torch.bool))
        object.__setattr__(self, "_state", {})
        self._reindex()

    def _reindex(self) -> None:
        self._user_index = {u: j for j, u in enumerate(self.users)}
        self._item_index = {m: j for j, m in enumerate(self.items)}
        self._level_index = {r: j for j, r in enumerate(self.levels)}

    def get_state_json(self) -> dict:
        state = self._catalog_state()
        if getattr(self, "_legacy", False):
            state.pop("n_train")
        return state

    def set_state_json(self, state: dict) -> None:
        # files saved before the shared recommending interface have no "n_train" and hold only
        # train_levels: the training ratings are rebuilt from it after loading (_after_load)
        self._legacy = "n_train" not in state
        if self._legacy and state.get("levels"):
            state = {**state, "rating_scale": [min(state["levels"]), max(state["levels"])]}
        self._restore_catalog(state)
        self._alloc()
        if self._legacy:
            for name in ("train_user", "train_item", "train_rating", "D", "rated_mask"):
                self._non_persistent_buffers_set.add(name)

    def _after_load(self) -> None:
        self._reindex()
        if getattr(self, "_legacy", False):
            user, item = torch.nonzero(self.train_levels >= 0, as_tuple=True)  # sorted by user, then item
            self.train_user, self.train_item = user, item
            self.train_rating = torch.tensor(self.levels, dtype=torch.float32)[self.train_levels[user, item].long()]

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    # ------------------------------------------------------------ data
    def _triples(self, data: Any, name: str, allow_empty: bool = False) -> torch.Tensor:
        """(user index, item index, level index) rows for known users and items."""
        from ..recommend.interface import ratings_frame

        df = ratings_frame(data, self.columns, name, allow_empty=allow_empty)
        return torch.stack([self._lookup(df[self.columns[0]], "user", name),
                            self._lookup(df[self.columns[1]], "item", name),
                            self._levels_of(df[self.columns[2]], name)], 1)

    def _levels_of(self, ratings: Any, name: str) -> torch.Tensor:
        values = pd.to_numeric(pd.Series(np.asarray(ratings, dtype=float)), errors="coerce")
        out = values.map(self._level_index)
        if out.isna().any():
            bad = values[out.isna()].iloc[0]
            raise ValueError(f"{name}: rating {bad!r} is out of range; valid ratings are {self.levels}")
        return torch.tensor(out.to_numpy(dtype=np.int64))

    # ------------------------------------------------------------ training
    @implements("mcmc")
    def _fit_mcmc(self, data: Any, **options: Any) -> FitResult:
        """CD-k over minibatches of users; ``validation`` (ratings of the same users) is scored by RMSE."""
        from ...infer.mcmc import fit_mcmc

        implicit = options.pop("implicit", None)
        self._fit_catalog(data)
        if len(self.levels) < 2:
            raise ValueError(f"data: need at least two distinct rating values, got {self.levels}")
        self._alloc()
        t = torch.stack([self.train_user, self.train_item, self._levels_of(self.train_rating.numpy(), "data")], 1)
        self.train_levels[t[:, 0], t[:, 1]] = t[:, 2].to(torch.int8)
        if self.conditional:
            self.rated_mask[t[:, 0], t[:, 1]] = True
            if implicit is not None:
                from ..recommend.interface import ratings_frame

                pairs = ratings_frame(implicit, self.columns, "implicit", need_rating=False)
                self.rated_mask[self._lookup(pairs[self.columns[0]], "user", "implicit"),
                                self._lookup(pairs[self.columns[1]], "item", "implicit")] = True
        elif implicit is not None:
            raise ValueError("implicit: (user, item) pairs known to be rated are used by conditional=True only")
        items = self.items
        k = self.num_levels
        # visible biases: log frequency of each level per item (smoothed), as in the paper
        freq = torch.bincount(t[:, 1] * k + t[:, 2], minlength=len(items) * k).float().reshape(-1, k) + 0.5
        self.b = (freq / freq.sum(1, keepdim=True)).log().reshape(-1)
        g = torch.Generator().manual_seed(0 if check_seed(options.get("seed")) is None else int(options["seed"]))
        self.W = 0.01 * torch.randn(len(items) * k, self.num_hidden, generator=g)
        self.c = torch.zeros(self.num_hidden)
        self.U = torch.zeros(k, self.num_hidden)
        options.setdefault("lr", 0.01)
        options.setdefault("batch_size", 32)
        check_positive("batch_size", options["batch_size"], integer=True)
        epochs = options.get("epochs")
        steps_per_epoch = -(-len(self.users) // int(options["batch_size"]))
        total = options.get("steps") or (epochs * steps_per_epoch if epochs else 1000)
        self._state.update(lr=float(check_positive("lr", options["lr"])), velocity=None, loss=None, total=total)
        validation = options.pop("validation", None)
        if validation is not None:
            validation = self._triples(validation, "validation")
        users_tensor = torch.arange(len(self.users), dtype=torch.float32)
        return fit_mcmc(self, users_tensor, validation=validation, **options)

    def _profiles(self, user_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rated pairs of these users: (row in the batch, item, level)."""
        levels = self.train_levels[user_idx]
        row, item = torch.nonzero(levels >= 0, as_tuple=True)
        return row, item, levels[row, item].long()

    def _hidden_prob(self, n: int, row: torch.Tensor, item: torch.Tensor, level: torch.Tensor,
                     users: torch.Tensor | None = None) -> torch.Tensor:
        # Σ over the rated items of W[item, level, :] — a sparse product, as index_add over the pairs
        rows = self.W[item * self.num_levels + level]
        if self.shared_levels:
            rows = rows + self.U[level]
        act = torch.zeros(n, self.num_hidden, device=self.W.device).index_add_(0, row, rows)
        if self.conditional and users is not None:
            act = act + self.rated_mask[users].float() @ self.D
        return torch.sigmoid(act + self.c)

    def _item_logits(self, h: torch.Tensor, row: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        k = self.num_levels
        w = self.W.reshape(-1, k, self.num_hidden)[item]  # (pairs, K, H)
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
        ph0 = self._hidden_prob(n, row, item, level, users)
        ph, lv = ph0, level
        total = self._state.get("total") or 1
        stage = min(1.0, step / total)  # CD-k schedule: k grows linearly from k to k_max over training
        for _ in range(self.k + int(stage * (self.k_max - self.k + 1)) if self.k_max > self.k else self.k):
            logits = self._item_logits(_bernoulli(ph), row, item)
            lv = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
            ph = self._hidden_prob(n, row, item, lv, users)
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
        if self.conditional:
            r = self.rated_mask[users].float()
            grads.append((r.T @ (ph0 - ph)).div_(n).add_(self.D, alpha=-self.weight_decay))
            params.append(self.D)
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
    def _user_hidden(self, users: torch.Tensor) -> torch.Tensor:
        """Mean-field hidden probabilities of known users given their training ratings."""
        return self._hidden_prob(len(users), *self._profiles(users), users)

    def _level_probs(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """p(level | user's training ratings) for (user, item) pairs (mean-field hidden units)."""
        uniq, inv = torch.unique(user_idx, return_inverse=True)
        with torch.no_grad():
            ph = self._user_hidden(uniq)
            return torch.softmax(self._item_logits(ph, inv, item_idx), -1)

    def _predict_idx(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        levels = torch.tensor(self.levels, device=self.W.device)
        return self._level_probs(user_idx, item_idx) @ levels

    def score(self, ratings: pd.DataFrame) -> torch.Tensor:
        """Surprise of each rating, -log p(rating | the user's training ratings) (higher = more anomalous)."""
        self._require_fitted("score")
        t = self._triples(ratings, "ratings", allow_empty=True)
        if not len(t):  # the empty-batch rule (probgen.core.rows)
            return torch.zeros(0, dtype=self.W.dtype)
        probs = self._level_probs(t[:, 0], t[:, 1])
        return -probs[torch.arange(len(t)), t[:, 2]].log()

    def _expected_all(self, ph: torch.Tensor) -> torch.Tensor:
        levels = torch.tensor(self.levels, device=self.W.device)
        return torch.softmax(self._all_item_logits(ph), -1) @ levels

    def _scores_known(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Expected rating of every item (the ranking score) for known users."""
        return self._expected_all(self._user_hidden(user_idx))

    def _scores_new(self, item_idx: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """Fold-in: the hidden units given the new user's ratings (and, conditional, that they rated those items)."""
        level = self._levels_of(ratings.numpy(), "user_ratings")
        ph = self._hidden_prob(1, torch.zeros(len(item_idx), dtype=torch.long), item_idx, level)
        if self.conditional:
            ph = torch.sigmoid(torch.logit(ph.clamp(1e-7, 1 - 1e-7)) + self.D[item_idx].sum(0))
        return self._expected_all(ph)[0]

    def _sample(self, n: int, steps: int = 50) -> torch.Tensor:
        """Ratings of ``n`` synthetic users for every item (a Gibbs chain of ``steps`` sweeps)."""
        self._require_fitted("sample")
        check_positive("steps", steps, integer=True)
        k = self.num_levels
        h = _bernoulli(torch.full((n, self.num_hidden), 0.5, device=self.W.device))
        for _ in range(steps):
            probs = torch.softmax(self._all_item_logits(h), -1)
            v = torch.multinomial(probs.reshape(-1, k), 1).reshape(n, -1)
            onehot = F.one_hot(v, k).float()
            act = onehot.reshape(n, -1) @ self.W
            if self.shared_levels:
                act = act + onehot.sum(1) @ self.U
            if self.conditional:  # a synthetic user rates every item
                act = act + self.D.sum(0)
            h = _bernoulli(torch.sigmoid(act + self.c))
        return torch.tensor(self.levels, device=self.W.device)[v]

    # ------------------------------------------------------------ examples
    @classmethod
    def _tour_setup(cls, quick: bool) -> tuple[Any, dict]:
        return (cls(num_hidden=50, weight_decay=0.01, shared_levels=True),
                {"epochs": 5 if quick else 20, "lr": 0.03, "batch_size": 32})

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = np.random.Generator(np.random.PCG64(0))
        taste = g.integers(0, 2, 30)
        rows = [(u, m, float(5 if (m % 2) == taste[u] else 1) if g.random() > 0.1 else 3.0)
                for u in range(30) for m in range(12) if g.random() < 0.6]
        df = pd.DataFrame(rows, columns=["userId", "movieId", "rating"])
        return ContractCase(cls(num_hidden=6), df, {"epochs": 3, "batch_size": 10}, sample_kwargs={"steps": 5},
                            log_prob_data=df.iloc[:5])


def _plain(x: Any) -> Any:
    """NumPy scalars to Python ones (JSON-safe ids)."""
    return x.item() if isinstance(x, np.generic) else x

