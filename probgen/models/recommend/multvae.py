"""Mult-VAE and Mult-DAE: a multinomial likelihood over each user's items (Liang et al. 2018)."""

from __future__ import annotations

__all__ = ["MultVAE", "MultDAE", "UserMultinomial"]

import contextlib
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_positive
from ...core.engines import implements
from ...core.random import seeded
from .interface import Recommender


class UserMultinomial(TorchDistribution):
    r"""A multinomial over items whose number of draws is each user's own item count.

    ``log_prob(x) = log N! - Σ_i log x_i! + Σ_i x_i log π_i`` with ``N = Σ_i x_i`` and
    ``π = softmax(logits)``: for every ``N`` the probabilities of all count vectors with that total
    sum to one, and ``mean = N π`` sums to ``N``. ``total_count`` (one per row) is needed only to
    sample.

    Example:
        >>> import torch
        >>> d = UserMultinomial(torch.zeros(2, 3), total_count=torch.tensor([2., 4.]))
        >>> d.mean.sum(-1).tolist()
        [2.0, 4.0]
        >>> round(float(d.log_prob(torch.tensor([[2., 0., 0.], [0., 0., 4.]]))[0].exp()), 4)
        0.1111
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, logits: torch.Tensor, total_count: torch.Tensor | None = None, validate_args=None):
        self.logits = logits
        self.total_count = total_count
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, -1)

    @property
    def mean(self) -> torch.Tensor:
        if self.total_count is None:
            raise ValueError("mean: this multinomial has no total_count (each user's number of items)")
        return self.total_count.unsqueeze(-1) * self.probs

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        tc = None if self.total_count is None else self.total_count.expand(batch_shape)
        return UserMultinomial(self.logits.expand(batch_shape + self.event_shape), tc)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logp = torch.log_softmax(self.logits, -1)
        n = value.sum(-1)
        out = torch.lgamma(n + 1) + (value * logp).sum(-1)
        if bool((value > 1).any()):  # log x! is 0 for counts of 0 and 1 (the usual case: skip the pass)
            out = out - torch.lgamma(value + 1).sum(-1)
        return out

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if self.total_count is None:
            raise ValueError("sample: this multinomial has no total_count (each user's number of items)")
        shape = torch.Size(sample_shape) + self.batch_shape
        probs = self.probs.expand(shape + self.event_shape).reshape(-1, self.event_shape[0])
        counts = self.total_count.expand(shape).reshape(-1).long()
        most = int(counts.max()) if len(counts) else 0
        out = torch.zeros_like(probs)
        if most > 0:
            draws = torch.multinomial(probs, most, replacement=True)
            keep = (torch.arange(most, device=probs.device) < counts[:, None]).to(probs.dtype)
            out.scatter_add_(1, draws, keep)
        return out.reshape(shape + self.event_shape)


class MultVAE(Recommender, Model):
    r"""Variational autoencoder for collaborative filtering with a multinomial likelihood.

    Each user is a vector of counts over the catalogue (1 for every item they rated, or rated at
    least ``threshold``). The Pyro model draws z ~ N(0, I) and the user's items from
    ``UserMultinomial(decoder(z))`` with the user's own item count; the guide is the amortised
    Gaussian q(z | x) of an encoder that sees the L2-normalised, dropped-out input. The ``svi``
    engine maximises the ELBO with the KL term weighted by β, annealed linearly from 0 to ``beta``
    over ``anneal_steps`` optimizer steps (β < 1 is the paper's partially regularised objective).

    Ranking scores are the decoder's log-probabilities at the encoder's mean, so a new user is
    folded in from their ratings by one encoder pass, and a training user's ranking is exactly
    that of their training items.

    Arguments:
        latent_dim: size of z.
        hidden: hidden layer sizes of the encoder (the decoder mirrors them); ``()`` for linear maps.
        dropout: input dropout of the encoder during training.
        beta: final weight of the KL term.
        anneal_steps: optimizer steps over which β grows from 0 to ``beta`` (0: β from the start).
        threshold: ratings at or above it count as the user's items; ``None``: every rated item.
        encode_all: the encoder sees every item the user rated, as rating / highest rating (the
            guide may condition on any observed data), while the likelihood stays over the items at
            or above ``threshold``.
        user_col, item_col, rating_col, title_col: the ratings table's columns.
        rating_scale: (lowest, highest) allowed rating; ``None``: the training range.

    References:
        Liang, Krishnan, Hoffman & Jebara, Variational autoencoders for collaborative filtering,
        WWW 2018.

    Example:
        >>> import pandas as pd, probgen
        >>> df = pd.DataFrame({"userId": [1, 1, 2, 2, 3, 3, 4], "movieId": [10, 20, 10, 20, 30, 40, 30],
        ...                    "rating": [5.0, 4.0, 4.0, 5.0, 5.0, 4.0, 5.0]})
        >>> vae = probgen.models.MultVAE(latent_dim=2, hidden=(8,), anneal_steps=10)
        >>> _ = vae.fit(df, steps=60, lr=0.05, progress=False, seed=0)
        >>> vae.recommend(4, k=1)["item"].tolist()
        [40]
    """

    family = "mult_vae"
    default_inference = "svi"
    log_prob_kind = "lower_bound"
    max_plate_nesting = 1
    variational = True

    def __init__(self, latent_dim: int = 64, hidden: Sequence[int] = (256,), dropout: float = 0.5, beta: float = 0.2,
                 anneal_steps: int = 2000, threshold: float | None = None, encode_all: bool = False,
                 user_col: str = "userId",
                 item_col: str = "movieId", rating_col: str = "rating", title_col: str | None = "title",
                 rating_scale: Sequence[float] | None = None):
        super().__init__()
        check_positive("latent_dim", latent_dim, integer=True)
        if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in hidden):
            raise ValueError(f"hidden: expected a sequence of positive layer sizes, got {hidden!r}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {dropout!r}")
        check_positive("beta", beta, strict=False)
        check_positive("anneal_steps", anneal_steps, strict=False, integer=True)
        if threshold is not None and not isinstance(threshold, (int, float)):
            raise ValueError(f"threshold: expected a rating value or None, got {threshold!r}")
        self.latent_dim, self.hidden, self.dropout = int(latent_dim), tuple(int(h) for h in hidden), float(dropout)
        self.beta, self.anneal_steps = float(beta), int(anneal_steps)
        self.threshold = None if threshold is None else float(threshold)
        if not isinstance(encode_all, bool):
            raise ValueError(f"encode_all: expected True or False, got {encode_all!r}")
        self.encode_all = encode_all
        self._init_recommender(user_col, item_col, rating_col, title_col, rating_scale)
        self._anneal = 0
        self.encoder = self.decoder = None

    # ------------------------------------------------------------- networks
    def _build(self, n_items: int) -> None:
        sizes = [n_items, *self.hidden]
        out = 2 * self.latent_dim if self.variational else self.latent_dim
        enc: list[torch.nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            enc += [torch.nn.Linear(a, b), torch.nn.Tanh()]
        self.encoder = torch.nn.Sequential(*enc, torch.nn.Linear(sizes[-1], out))
        dec: list[torch.nn.Module] = []
        back = [self.latent_dim, *reversed(self.hidden)]
        for a, b in zip(back[:-1], back[1:]):
            dec += [torch.nn.Linear(a, b), torch.nn.Tanh()]
        self.decoder = torch.nn.Sequential(*dec, torch.nn.Linear(back[-1], n_items))
        for m in [*self.encoder, *self.decoder]:  # Xavier weights, small biases (as in the paper)
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                torch.nn.init.normal_(m.bias, std=0.001)

    def get_state_json(self) -> dict:
        return self._catalog_state()

    def set_state_json(self, state: dict) -> None:
        self._restore_catalog(state)
        if self.items:
            self._build(len(self.items))

    # ------------------------------------------------------------------ data
    def _counts_of(self, user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, n_rows: int,
                   every_rated: bool = False) -> torch.Tensor:
        keep = (torch.ones_like(rating, dtype=torch.bool) if self.threshold is None or every_rated
                else rating >= self.threshold)
        x = torch.zeros(n_rows, len(self.items), device=self.device)
        # the likelihood's counts are 1 per item; the encoder's view of every rated item (encode_all) is
        # the rating over the top of the scale, so that it still tells liked from disliked items
        x[user[keep], item[keep]] = (rating[keep] / max(self.rating_scale[1], 1e-6)).to(x) if every_rated else 1.0
        return x

    def counts(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """The count vectors (users x items) of known users (index tensor; all when ``None``)."""
        x = self._counts_of(self.train_user, self.train_item, self.train_rating, len(self.users))
        return x if users is None else x[users]

    def inputs(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """What the encoder sees for known users: every rated item with ``encode_all``, else ``counts``."""
        if not self.encode_all:
            return self.counts(users)
        x = self._counts_of(self.train_user, self.train_item, self.train_rating, len(self.users), every_rated=True)
        return x if users is None else x[users]

    def _pair(self, user, item, rating, n_rows) -> tuple[torch.Tensor, ...]:
        x = self._counts_of(user, item, rating, n_rows)
        return (x, self._counts_of(user, item, rating, n_rows, every_rated=True)) if self.encode_all else (x,)

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        """A ratings DataFrame (of known items; each user a row) or a (users x items) count tensor."""
        self._require_fitted(name)
        if isinstance(data, pd.DataFrame):
            from .interface import ratings_frame

            df = ratings_frame(data, self.columns, name)
            self._check_scale(df[self.columns[2]].to_numpy(dtype=float), name)
            codes, uniques = pd.factorize(df[self.columns[0]], sort=True)
            item = self._lookup(df[self.columns[1]], "item", name)
            return tuple(t.cpu() for t in self._pair(torch.as_tensor(codes), item, torch.tensor(
                df[self.columns[2]].to_numpy(dtype=np.float32)), len(uniques)))
        parts = data if isinstance(data, (tuple, list)) else (data,)
        if not 1 <= len(parts) <= 2:
            raise ValueError(f"{name}: expected a (users x items) count tensor, a pair (counts, encoder inputs) "
                             f"or a ratings DataFrame, got {type(data).__name__} of {len(parts)} parts")
        out = []
        for j, part in enumerate(parts[:2]):
            x = as_tensor(part, name, ndim=2)
            if x.shape[1] != len(self.items):
                raise ValueError(f"{name}: expected counts over the {len(self.items)} items, got {x.shape[1]} columns")
            if (x < 0).any() or (j == 0 and (x != x.round()).any()):
                raise ValueError(f"{name}: expected non-negative integer counts" if j == 0 else
                                 f"{name}: expected non-negative encoder inputs")
            out.append(x)
        if len(out) == 2 and len(out[0]) != len(out[1]):
            raise ValueError(f"{name}: the counts and the encoder inputs must have the same rows")
        return tuple(out)

    # --------------------------------------------------------- Pyro programs
    def _kl_scale(self):
        if not self.variational:
            return contextlib.nullcontext()
        beta = self.beta if self.anneal_steps == 0 else self.beta * min(1.0, self._anneal / self.anneal_steps)
        # Pyro refuses a zero scale: at β = 0 the KL term gets a negligible weight instead
        return poutine.scale(scale=max(beta, 1e-8)) if self.training else contextlib.nullcontext()

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        h = F.normalize(x, dim=-1)
        if self.training and self.dropout > 0:
            h = F.dropout(h, self.dropout)
        return self.encoder(h)

    def model(self, x: torch.Tensor | None = None, x_in: torch.Tensor | None = None, n: int | None = None) -> torch.Tensor:
        """z ~ N(0, I); x ~ UserMultinomial(decoder(z)) with the user's item count (observed when given)."""
        n = len(x) if x is not None else int(n or 1)
        with self.data_plate(n, device=self.device):
            if self.variational:
                with self._kl_scale():
                    z = pyro.sample("z", dist.Normal(torch.zeros(n, self.latent_dim, device=self.device), 1.0).to_event(1))
            else:  # Mult-DAE: the code is a deterministic function of the (dropped-out) input
                seen = x if x_in is None else x_in
                z = torch.tanh(self._encode(seen)) if seen is not None else torch.zeros(n, self.latent_dim, device=self.device)
            total = x.sum(-1) if x is not None else self._sample_counts(n)
            # the counts were checked where they entered (prepare_data): no support check every step
            return pyro.sample("x", UserMultinomial(self.decoder(z), total, validate_args=False), obs=x)

    def guide(self, x: torch.Tensor | None = None, x_in: torch.Tensor | None = None, n: int | None = None) -> None:
        """q(z | x): a diagonal Gaussian from the encoder (Mult-DAE: no latent, an empty guide)."""
        if not self.variational:
            return None
        loc, scale = self._qz(x if x_in is None else x_in)
        with self.data_plate(len(x), device=self.device), self._kl_scale():
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def _qz(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self._encode(x).chunk(2, -1)
        return loc, torch.exp(0.5 * raw.clamp(-20, 10))

    def _sample_counts(self, n: int) -> torch.Tensor:
        totals = self.counts().sum(-1)
        totals = totals[totals > 0] if (totals > 0).any() else torch.ones(1)
        return totals[torch.randint(len(totals), (n,))]

    @implements("svi")
    def _fit_svi(self, data: Any, **options: Any):
        """SVI on the ELBO (β annealed) over the users' count vectors; ``data`` is a ratings DataFrame."""
        from ...infer.svi import fit_svi

        self._fit_catalog(data)
        with seeded(options.get("seed")):
            self._build(len(self.items))
        self._anneal = 0

        def anneal(step, record, model):
            model._anneal += 1
            record["beta"] = self.beta if self.anneal_steps == 0 else self.beta * min(1.0, self._anneal / self.anneal_steps)
            return False

        callbacks = options.pop("callbacks", ())
        callbacks = (callbacks,) if callable(callbacks) else tuple(callbacks)
        options.setdefault("batch_size", 128)
        data = (self.counts(), self.inputs()) if self.encode_all else self.counts()
        return fit_svi(self, data, callbacks=(anneal, *callbacks), **options)

    # ----------------------------------------------------------- recommend
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            code = self._encode(x)
            z = code.chunk(2, -1)[0] if self.variational else torch.tanh(code)
            return torch.log_softmax(self.decoder(z), -1)
        finally:
            self.train(was)

    def _scores_known(self, user_idx: torch.Tensor) -> torch.Tensor:
        return self._logits(self.inputs(user_idx))

    def _scores_new(self, item_idx: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        x = self._pair(torch.zeros_like(item_idx), item_idx, ratings, 1)[-1]
        return self._logits(x)[0]

    # -------------------------------------------------------------- queries
    def log_prob(self, x: Any, num_particles: int = 10, seed: int | None = None) -> torch.Tensor:
        """ELBO per user (β = 1, ``num_particles`` draws of z): a lower bound on log p(x).
        ``x``: a (users x items) count tensor, or a ratings DataFrame (each user in it a row)."""
        self._require_fitted("log_prob")
        parts = self.prepare_data(x, "x")
        x, seen = parts[0].to(self.device), parts[-1].to(self.device)
        if len(x) == 0:  # zero users answer zero rows (probgen.core.rows)
            return torch.zeros(0, device=self.device)
        was = self.training
        self.eval()
        try:
            with torch.no_grad(), seeded(seed):
                if not self.variational:
                    return UserMultinomial(self.decoder(torch.tanh(self._encode(seen)))).log_prob(x)
                loc, scale = self._qz(seen)
                q = dist.Normal(loc, scale).to_event(1)
                p = dist.Normal(torch.zeros_like(loc), 1.0).to_event(1)
                z = q.rsample((int(num_particles),))
                rec = UserMultinomial(self.decoder(z)).log_prob(x).mean(0)
                return rec - torch.distributions.kl_divergence(q, p)
        finally:
            self.train(was)

    def _sample(self, n: int) -> torch.Tensor:
        """Count vectors of ``n`` synthetic users (item counts drawn from the training users')."""
        self._require_fitted("sample")
        z = torch.randn(n, self.latent_dim, device=self.device)
        if not self.variational:
            z = torch.tanh(z)
        return UserMultinomial(self.decoder(z), self._sample_counts(n)).sample()

    @classmethod
    def _tour_setup(cls, quick: bool) -> tuple[Any, dict]:
        kw = {"anneal_steps": 40} if cls.variational else {}
        return (cls(latent_dim=64, hidden=(), threshold=4.0, **kw),
                {"epochs": 10 if quick else 30, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-5})

    @classmethod
    def _contract_case(cls) -> ContractCase:
        df = _toy_ratings()
        model = cls(latent_dim=3, hidden=(8,), **({"anneal_steps": 20} if cls.variational else {}))
        probe = torch.zeros(5, 12)  # count vectors of the first five users (the toy catalogue is items 0-11)
        head = df[df.userId < 5]
        probe[torch.tensor(head.userId.to_numpy()), torch.tensor(head.movieId.to_numpy())] = 1.0
        return ContractCase(model, df, {"steps": 20, "lr": 0.01}, log_prob_data=probe)


class MultDAE(MultVAE):
    r"""Denoising autoencoder with a multinomial likelihood (Mult-DAE, Liang et al. 2018).

    The same Pyro model as ``MultVAE`` with the code a deterministic function of the dropped-out
    input and no latent variable, so the ``svi`` engine (an empty guide) maximises the multinomial
    log-likelihood of each user's items given their corrupted input. ``log_prob`` is that
    reconstruction log-likelihood, not a likelihood of new data, so ``log_prob_kind`` is ``None``.

    Example:
        >>> import pandas as pd, probgen
        >>> df = pd.DataFrame({"userId": [1, 1, 2, 2, 3, 3, 4], "movieId": [10, 20, 10, 20, 30, 40, 30],
        ...                    "rating": [5.0, 4.0, 4.0, 5.0, 5.0, 4.0, 5.0]})
        >>> dae = probgen.models.MultDAE(latent_dim=4, hidden=())
        >>> _ = dae.fit(df, steps=60, lr=0.05, progress=False, seed=0)
        >>> dae.recommend({30: 5.0}, k=1)["item"].tolist()
        [40]
    """

    family = "mult_dae"
    log_prob_kind = None
    log_prob_alternative = "score(x) (the negative reconstruction log-likelihood of each user's items)"
    variational = False

    def __init__(self, latent_dim: int = 64, hidden: Sequence[int] = (256,), dropout: float = 0.5,
                 threshold: float | None = None, encode_all: bool = False, user_col: str = "userId",
                 item_col: str = "movieId", rating_col: str = "rating", title_col: str | None = "title",
                 rating_scale: Sequence[float] | None = None):
        super().__init__(latent_dim=latent_dim, hidden=hidden, dropout=dropout, beta=0.0, anneal_steps=0,
                         threshold=threshold, encode_all=encode_all, user_col=user_col, item_col=item_col, rating_col=rating_col,
                         title_col=title_col, rating_scale=rating_scale)

    def log_prob(self, x: Any, num_particles: int = 1, seed: int | None = None) -> torch.Tensor:
        from ...core.base import NoLikelihoodError

        raise NoLikelihoodError(f"MultDAE.log_prob: a denoising autoencoder has no likelihood of new data; use "
                                f"{self.log_prob_alternative} instead")

    def score(self, x: Any) -> torch.Tensor:
        """Negative multinomial log-likelihood of each user's items given their own encoding."""
        return -super().log_prob(x)


def _toy_ratings(users: int = 24, items: int = 12, seed: int = 0) -> pd.DataFrame:
    """Two tastes (odd / even items): likers rate their kind 4-5 and the other kind 1-2."""
    rng = np.random.Generator(np.random.PCG64(seed))
    taste = rng.integers(0, 2, users)
    rows = []
    for u in range(users):
        for m in rng.choice(items, size=items // 2, replace=False):
            liked = (m % 2) == taste[u]
            rows.append((u, int(m), float(rng.choice([4.0, 5.0]) if liked else rng.choice([1.0, 2.0]))))
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating"])
