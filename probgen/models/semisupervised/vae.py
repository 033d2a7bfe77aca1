"""Semi-supervised VAEs (Kingma et al. 2014): M2, and M1+M2 (M2 on the codes of a VAE).

The label is a latent variable of the Pyro program: observed where it is known, and
enumerated exactly over the classes where it is not (``TraceEnum_ELBO`` through probgen's
``svi`` engine). The classifier q(y | x) is the guide of that label; a supervised term
``alpha * log q(y | x)`` on the labelled examples makes it learn from the labels directly too.
"""

from __future__ import annotations

__all__ = ["SemiSupervisedVAE", "StackedSemiSupervisedVAE", "replicate_labelled"]

import math
from typing import Any, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from ...core.base import ContractCase, Model
from ...core.checks import as_tensor, check_choice, check_labels, check_positive, check_probability, class_labels
from ...core.engines import implements
from ...core.random import seeded
from ..autoencoders.autoencoder import _CodecMixin
from ...nn.mlp import MLP

LIKELIHOODS = ("bernoulli", "gaussian")
UNKNOWN = -1


def replicate_labelled(x: torch.Tensor, y: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Repeat the labelled rows so they make up about ``share`` of the rows; returns ``(x, y, repeats)``.

    With 100 labels among 4,000 images a plain minibatch holds two or three labelled examples;
    repeating them (and scaling their terms by ``1 / repeats``, which keeps the objective's
    expectation) gives every minibatch a useful labelled part.

    Example:
        >>> x, y = torch.zeros(10, 2), torch.tensor([0, 1] + [-1] * 8)
        >>> xr, yr, r = replicate_labelled(x, y, 0.5)
        >>> r, int((yr >= 0).sum()), len(yr)
        (4, 8, 16)
    """
    labelled = y >= 0
    n_l, n_u = int(labelled.sum()), int((~labelled).sum())
    if n_l == 0 or n_u == 0 or share <= 0:
        return x, y, 1
    repeats = max(1, round(share * n_u / ((1 - share) * n_l))) if share < 1 else 1
    if repeats == 1:
        return x, y, 1
    xl, yl = x[labelled], y[labelled]
    reps = (repeats,) + (1,) * (x.dim() - 1)
    return torch.cat([x[~labelled], xl.repeat(*reps)]), torch.cat([y[~labelled], yl.repeat(repeats)]), repeats


def _join(h: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last axis after broadcasting the leading (enumeration, batch) axes."""
    lead = torch.broadcast_shapes(h.shape[:-1], extra.shape[:-1])
    return torch.cat([h.expand(*lead, h.shape[-1]), extra.expand(*lead, extra.shape[-1])], -1)


class _LabelledEncoder(nn.Module):
    """q(z | f, y): the first layer is split into W f + V onehot(y), so that enumerating the K
    labels of a minibatch costs one pass of the (large) input layer, not K."""

    def __init__(self, in_dim: int, num_classes: int, latent_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden[0])
        self.label = nn.Linear(num_classes, hidden[0], bias=False)
        self.rest = MLP(hidden[0], 2 * latent_dim, hidden=tuple(hidden[1:]))

    def forward(self, f: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.softplus(self.inp(f) + self.label(onehot))
        # the plain MLP starts with a Linear layer: an activation sits between the two parts
        loc, raw = self.rest(h).chunk(2, -1)
        return loc, F.softplus(raw) + 1e-4


def split_partly_labelled(model: Any, data: Any, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a semi-supervised family: ``x`` through the model's shape check, ``y`` labels in
    ``[0, num_classes)`` or ``UNKNOWN`` (-1 / NaN); training data must label every class at least once."""
    if hasattr(data, "x") and hasattr(data, "y") and not isinstance(data, torch.Tensor):
        data = (data.x, data.y)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(f"{name}: expected (x, y) with y = -1 (or NaN) where the label is unknown, "
                         f"got {type(data).__name__}")
    x = model._as_data(data[0], f"{name} (x)")
    y = check_labels(data[1], model.num_classes, f"{name} (y)", length=len(x), unknown=UNKNOWN,
                     every_class=name == "data")
    return x, y


class SemiSupervisedVAE(_CodecMixin, Model):
    r"""The M2 model of Kingma et al. (2014): y ~ Cat(1/K), z ~ N(0, I), x ~ p(x | y, z).

    The guide is q(y | x) (the classifier) and q(z | x, y). ``fit((x, y))`` takes labels with
    ``-1`` (or NaN) where unknown: for a labelled example y is observed; for an unlabelled one
    the guide's y is enumerated exactly over the K classes (Pyro's ``TraceEnum_ELBO``, through
    probgen's ``svi`` engine, ``loss="enum"``). The model also adds
    ``alpha * log q(y | x)`` on each labelled example (Kingma's J^alpha), so the classifier
    learns from the labels as well as through the bound. Labelled examples are repeated so that
    they make up ``labelled_share`` of each epoch (a ``fit`` option, default 0.25), their terms
    scaled down to keep the objective unchanged in expectation.

    ``predict`` / ``predict_proba`` use q(y | x). ``sample(n, label=c)`` draws examples of class c;
    ``encode(x)`` gives the style code E[z | x, y] (y predicted when not given) and
    ``decode(z, label)`` renders a style as any class. ``log_prob(x)`` is the bound on log p(x)
    (kind ``"lower_bound"``): E_q(y|x)[ELBO(x, y)] + H(q(y | x)); with ``y`` given, the bound on
    log p(x, y) for the known labels.

    Arguments:
        data_shape: shape of one example; ``None``: taken from the data at ``fit``.
        num_classes: K.
        latent_dim: size of the style code z.
        hidden: hidden sizes of the encoder and decoder MLPs (data side first).
        classifier_hidden: hidden sizes of the classifier q(y | x) (default: ``hidden``).
        likelihood: ``"bernoulli"`` (binary data) or ``"gaussian"`` (a learned scale per dimension).
        alpha: weight of the classification term per labelled example (in nats of the bound: scale it
            with the data's size; Kingma et al. put 0.1 N on the mean over the n labelled examples, which is
            0.1 N / n each, and Pyro's SS-VAE example uses about 50 on MNIST).
        classifier_dropout: dropout on the classifier's input and hidden layers (a regulariser
            that matters with few labels).

    References:
        Kingma, Rezende, Mohamed, Welling (2014). Semi-supervised learning with deep generative models. NeurIPS.

    Example:
        >>> import torch, probgen
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(0, 2, (200,), generator=g)
        >>> x = (torch.rand(200, 8, generator=g) < 0.15 + 0.7 * y[:, None]).float()
        >>> labels = torch.where(torch.arange(200) < 20, y, -1)       # 20 labels, 180 unknown
        >>> m2 = probgen.models.SemiSupervisedVAE(num_classes=2, latent_dim=2, hidden=(16,))
        >>> _ = m2.fit((x, labels), epochs=20, lr=1e-2, progress=False, seed=0)
        >>> bool((m2.predict(x) == y).float().mean() > 0.9)
        True
        >>> m2.sample(3, label=1, seed=0).shape
        torch.Size([3, 8])
    """

    family = "semi_supervised_vae"
    default_inference = "svi"
    log_prob_kind = "lower_bound"
    max_plate_nesting = 1

    def __init__(self, data_shape: Sequence[int] | None = None, num_classes: int = 10, latent_dim: int = 16,
                 hidden: Sequence[int] = (256,), classifier_hidden: Sequence[int] | None = None,
                 likelihood: str = "bernoulli", alpha: float = 50.0, classifier_dropout: float = 0.0):
        super().__init__()
        check_positive("num_classes", num_classes, integer=True)
        if num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes}")
        check_positive("latent_dim", latent_dim, integer=True)
        self.num_classes, self.latent_dim = int(num_classes), int(latent_dim)
        self.hidden = self._check_hidden("hidden", hidden)
        self.classifier_hidden = self._check_hidden("classifier_hidden", classifier_hidden or hidden)
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.alpha = float(check_positive("alpha", alpha, strict=False))
        self.classifier_dropout = check_probability("classifier_dropout", classifier_dropout)
        self.data_shape: tuple[int, ...] | None = None
        self._label_repeat = 1
        self.enumerate = True  # False: the guide samples the unknown label (for checking the enumeration)
        if data_shape is not None:
            self._build(self._check_data_shape(data_shape))

    @staticmethod
    def _check_hidden(name: str, hidden: Any) -> tuple[int, ...]:
        hidden = tuple(hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"{name}: expected a non-empty sequence of positive integers, got {hidden!r}")
        return hidden

    # ---------------------------------------------------------------- networks
    @property
    def feature_dim(self) -> int:
        """Size of the vectors M2 models (the flattened example here; the M1 code in the stack)."""
        return math.prod(self.data_shape)

    def _build(self, shape: tuple[int, ...]) -> None:
        self.data_shape = shape
        d, k = self.feature_dim, self.num_classes
        layers: list[nn.Module] = []
        sizes = [d, *self.classifier_hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Dropout(self.classifier_dropout), nn.Linear(a, b), nn.Softplus()]
        layers += [nn.Dropout(self.classifier_dropout), nn.Linear(sizes[-1], k)]
        self.classifier = nn.Sequential(*layers)
        self.encoder = _LabelledEncoder(d, k, self.latent_dim, self.hidden)
        self.decoder = MLP(self.latent_dim + k, d, hidden=self.hidden[::-1])
        if self.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(d))

    # -------------------------------------------------------------------- data
    def _check_values(self, t: torch.Tensor, name: str) -> None:
        if self._data_likelihood == "bernoulli" and not torch.all((t == 0) | (t == 1)):
            raise ValueError(f"{name}: likelihood='bernoulli' needs binary data in {{0, 1}}; binarize first "
                             "(e.g. (x > 0.5).float(), or the '*_binary' data sets) or use likelihood='gaussian'")

    @property
    def _data_likelihood(self) -> str:
        return self.likelihood

    def _split(self, data: Any, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
        x, y = split_partly_labelled(self, data, name)
        return x, y.to(self.device)

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        x, y = self._split(data, name)
        return x.cpu(), y.cpu()

    def _onehot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).to(torch.get_default_dtype())

    # ----------------------------------------------------------- Pyro programs
    def _px(self, out: torch.Tensor) -> dist.Distribution:
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, self.log_scale.exp()).to_event(1)

    def _features_guide(self, x: torch.Tensor, part: str) -> torch.Tensor:
        """The vectors M2 sees, inside the guide's plate: here the flattened examples."""
        return x.flatten(1)

    def _observe(self, part: str, px: dist.Distribution, x: torch.Tensor) -> None:
        """The model's last step, inside its plate: here x ~ p(x | y, z), observed."""
        pyro.sample(f"x_{part}", px, obs=x.flatten(1))

    def _scales(self, n: int) -> tuple[float, float]:
        """Scales of the labelled and unlabelled terms of a minibatch of ``n`` rows."""
        full = getattr(self, "_num_data", None) or n
        s = max(full, n) / n
        repeat = self._label_repeat if self.training else 1
        return s / repeat, s

    def model(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """y ~ Cat(1/K) (observed where y >= 0), z ~ N(0, I), x ~ p(x | decoder(z, y)); plus the
        factor ``alpha * log q(y | x)`` on the labelled rows."""
        self._require_built()
        k, dev = self.num_classes, x.device
        prior = torch.full((k,), 1.0 / k, device=dev)
        known = y >= 0
        scale_l, scale_u = self._scales(len(x))
        for part, rows, scale in (("l", known, scale_l), ("u", ~known, scale_u)):
            m = int(rows.sum())
            if m == 0:
                continue
            xs = x[rows]
            with pyro.plate(f"data_{part}", m, dim=-1), poutine.scale(scale=scale):
                label = pyro.sample(f"y_{part}", dist.Categorical(prior), obs=y[rows] if part == "l" else None)
                z = pyro.sample(f"z_{part}", dist.Normal(torch.zeros(m, self.latent_dim, device=dev), 1.0).to_event(1))
                self._observe(part, self._px(self.decoder(_join(z, self._onehot(label)))), xs)
                if part == "l" and self.alpha > 0:
                    logits = self.classifier(self._features_guide_detached(xs))
                    pyro.factor("classifier", self.alpha * dist.Categorical(logits=logits).log_prob(label))

    def _features_guide_detached(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def guide(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """q(y | x) (enumerated where y is unknown) and q(z | x, y), a diagonal Gaussian."""
        self._require_built()
        known = y >= 0
        scale_l, scale_u = self._scales(len(x))
        for part, rows, scale in (("l", known, scale_l), ("u", ~known, scale_u)):
            m = int(rows.sum())
            if m == 0:
                continue
            with pyro.plate(f"data_{part}", m, dim=-1), poutine.scale(scale=scale):
                f = self._features_guide(x[rows], part)
                if part == "l":
                    label = y[rows]
                else:
                    infer = {"enumerate": "parallel"} if self.enumerate else {}
                    label = pyro.sample("y_u", dist.Categorical(logits=self.classifier(f)), infer=infer)
                loc, scale_z = self.encoder(f, self._onehot(label))
                pyro.sample(f"z_{part}", dist.Normal(loc, scale_z).to_event(1))

    @implements("svi")
    def _fit_svi(self, data: Any, labelled_share: float = 0.25, **options: Any):
        """SVI with ``TraceEnum_ELBO``; ``labelled_share``: the share of each epoch's rows that are
        (repeated) labelled examples."""
        from ...infer.svi import fit_svi

        check_probability("labelled_share", labelled_share)
        if labelled_share >= 1:
            raise ValueError(f"labelled_share: expected a share in [0, 1), got {labelled_share!r}")
        with seeded(options.get("seed")):
            x, y = self._split(data)  # builds the networks under the fit's seed
        self._before_fit(x, options)
        xr, yr, repeats = replicate_labelled(x.cpu(), y.cpu(), labelled_share)
        n_labelled = int((y >= 0).sum())
        # enumeration only where some label is unknown (with every label known there is nothing to enumerate)
        options.setdefault("loss", "enum" if n_labelled < len(y) else "elbo")
        self._label_repeat = repeats
        try:
            result = fit_svi(self, (xr, yr), **options)
        finally:
            self._label_repeat = 1
        result.info.update(labelled=int((y >= 0).sum()), unlabelled=int((y < 0).sum()), label_repeats=repeats,
                           alpha=self.alpha)
        return result

    def _before_fit(self, x: torch.Tensor, options: dict) -> None:
        """Hook for the stack (fits M1 first)."""

    # ----------------------------------------------------------------- queries
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic features for classification and encoding."""
        return x.flatten(1)

    def predict_proba(self, x: Any) -> torch.Tensor:
        """Class probabilities q(y | x), ``(n, num_classes)``."""
        self._require_built()
        x = self._as_data(x)
        was = self.training
        self.eval()
        with torch.no_grad():
            out = torch.cat([torch.softmax(self.classifier(self._features(x[s])), -1) for s in _chunks(len(x), 4096)]
                            ) if len(x) else x.new_zeros(0, self.num_classes)
        self.train(was)
        return out

    def predict(self, x: Any) -> torch.Tensor:
        """The most probable class under q(y | x), ``(n,)``."""
        return self.predict_proba(x).argmax(-1)

    def _label_arg(self, label: Any, n: int, name: str = "label") -> torch.Tensor:
        return class_labels(label, self.num_classes, n, name).to(self.device)

    def encode(self, x: Any, y: Any = None) -> torch.Tensor:
        """The style code E[z | x, y] ``(n, latent_dim)``; without ``y`` the predicted class is used."""
        self._require_built()
        x = self._as_data(x)
        label = self.predict(x) if y is None else self._label_arg(y, len(x), "y")
        with torch.no_grad():
            return self.encoder(self._features(x), self._onehot(label))[0]

    def _decode_features(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        out = self.decoder(_join(z, self._onehot(label)))
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def decode(self, z: Any, label: Any) -> torch.Tensor:
        """Means of p(x | y, z): the style ``z`` rendered as class ``label`` (an int or one per row)."""
        self._require_built()
        z = as_tensor(z, "z", ndim=2, shape=(self.latent_dim,), device=self.device)
        label = self._label_arg(label, len(z))
        with torch.no_grad():
            return self._decode_features(z, label).reshape(len(z), *self.data_shape)

    def _sample(self, n: int, label: Any = None) -> torch.Tensor:
        """Means of p(x | y, z) for z ~ N(0, I); ``label``: a class, one per row, or ``None`` (y ~ Cat(1/K))."""
        self._require_built()
        if label is None:
            label = torch.randint(0, self.num_classes, (n,), device=self.device)
        label = self._label_arg(label, n)
        z = torch.randn(n, self.latent_dim, device=self.device)
        return self.decode(z, label)

    def _bound_features(self, f: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """ELBO per row on log p(f, y) where y >= 0, on log p(f) (label summed out under q) where not."""
        k, n = self.num_classes, len(f)
        labels = torch.arange(k, device=f.device)[:, None].expand(k, n)  # (K, n)
        loc, scale = self.encoder(f, self._onehot(labels))  # (K, n, latent)
        z = loc + scale * torch.randn_like(loc)
        kl = (0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).sum(-1)
        out = self.decoder(_join(z, self._onehot(labels)))
        elbo_y = self._px(out).log_prob(f) - kl - math.log(k)  # (K, n): ELBO of log p(f, y=k)
        q = torch.log_softmax(self.classifier(f), -1).T  # (K, n)
        unknown = (q.exp() * (elbo_y - q)).sum(0)
        if y is None:
            return unknown
        known = elbo_y.gather(0, y.clamp(min=0)[None]).squeeze(0)
        return torch.where(y >= 0, known, unknown)

    def log_prob(self, x: Any, y: Any = None, seed: int | None = None) -> torch.Tensor:
        """A lower bound per example (nats) on log p(x), or on log p(x, y) where ``y`` (-1 / NaN: unknown) is known."""
        self._require_built()
        x, labels = self._query_data(x, y)
        was = self.training
        self.eval()
        with seeded(seed), torch.no_grad():
            out = [self._bound(x[s], None if labels is None else labels[s]) for s in _chunks(len(x), 1024)]
        self.train(was)
        return torch.cat(out) if out else x.new_zeros(0)

    def _query_data(self, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(x, tuple) and len(x) == 2 and y is None:
            x, y = x
        x = self._as_data(x)
        labels = None if y is None else check_labels(y, self.num_classes, "y", length=len(x),
                                                     unknown=UNKNOWN).to(self.device)
        return x, labels

    def _bound(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self._bound_features(x.flatten(1), y)

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 3, (60,), generator=g)
        x = (torch.rand(60, 6, generator=g) < 0.2 + 0.3 * y[:, None]).float()
        labels = torch.where(torch.arange(60) < 15, y, -1)
        return ContractCase(cls(num_classes=3, latent_dim=2, hidden=(8,)), (x, labels), {"steps": 10, "lr": 1e-2},
                            sample_kwargs={"label": 1}, log_prob_data=x[:4])


class StackedSemiSupervisedVAE(SemiSupervisedVAE):
    r"""M1+M2 (Kingma et al. 2014): M2 on the codes z1 of a VAE (M1) fitted first to every example.

    The generative model is y, z2 -> z1 -> x: p(z1 | y, z2) is M2's Gaussian decoder and
    p(x | z1) is M1's. The guide draws z1 ~ q(z1 | x) from M1's (frozen) encoder, then M2's
    q(y | z1) and q(z2 | z1, y), so one draw of z1 per step serves as data augmentation, as in
    the paper. ``fit((x, y))`` first fits M1 to all of x (``m1_epochs``, ``m1_lr``: fit options;
    skipped when M1 is already fitted, e.g. copied from another model) and then M2 with the
    enumerated label. ``log_prob(x)`` is the bound
    E_q(z1|x)[log p(x | z1) + ELBO_M2(z1) - log q(z1 | x)] <= log p(x) (one draw of z1).

    Arguments:
        data_shape, num_classes, alpha, classifier_dropout: as for ``SemiSupervisedVAE``.
        m1_latent_dim, m1_hidden: M1's code size and MLP hidden sizes.
        latent_dim, hidden, classifier_hidden: M2's (on the codes).

    Example:
        >>> import torch, probgen
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(0, 2, (200,), generator=g)
        >>> x = (torch.rand(200, 8, generator=g) < 0.15 + 0.7 * y[:, None]).float()
        >>> labels = torch.where(torch.arange(200) < 20, y, -1)
        >>> m = probgen.models.StackedSemiSupervisedVAE(num_classes=2, m1_latent_dim=4, m1_hidden=(16,),
        ...                                             latent_dim=2, hidden=(16,), alpha=10.0)
        >>> _ = m.fit((x, labels), epochs=20, m1_epochs=20, lr=1e-2, progress=False, seed=0)
        >>> bool((m.predict(x) == y).float().mean() > 0.8)
        True
    """

    family = "stacked_semi_supervised_vae"

    def __init__(self, data_shape: Sequence[int] | None = None, num_classes: int = 10, m1_latent_dim: int = 32,
                 m1_hidden: Sequence[int] = (512, 256), latent_dim: int = 16, hidden: Sequence[int] = (256,),
                 classifier_hidden: Sequence[int] | None = None, alpha: float = 50.0,
                 classifier_dropout: float = 0.0):
        check_positive("m1_latent_dim", m1_latent_dim, integer=True)
        self.m1_latent_dim = int(m1_latent_dim)
        self.m1_hidden = self._check_hidden("m1_hidden", m1_hidden)
        super().__init__(data_shape, num_classes, latent_dim, hidden, classifier_hidden, "gaussian", alpha,
                         classifier_dropout)
        self.register_buffer("m1_fitted", torch.zeros((), dtype=torch.bool))

    @property
    def feature_dim(self) -> int:
        return self.m1_latent_dim

    def _build(self, shape: tuple[int, ...]) -> None:
        from ..autoencoders.vae import VAE

        self.m1 = VAE(data_shape=shape, latent_dim=self.m1_latent_dim, hidden=self.m1_hidden)
        super()._build(shape)

    @property
    def _data_likelihood(self) -> str:
        return "bernoulli"  # M1's; M2's own likelihood is Gaussian, on the codes

    def _before_fit(self, x: torch.Tensor, options: dict) -> None:
        m1_epochs = options.pop("m1_epochs", None)
        m1_lr = options.pop("m1_lr", 1e-3)
        if m1_epochs is None:
            m1_epochs = 0 if bool(self.m1_fitted) else 20
        if m1_epochs:
            check_positive("m1_epochs", m1_epochs, integer=True)
            self.m1.requires_grad_(True)
            self.m1.fit(x.cpu(), epochs=m1_epochs, lr=m1_lr, seed=options.get("seed"),
                        batch_size=options.get("batch_size") or 128, progress=options.get("progress", True),
                        device=options.get("device"))
            self.m1_fitted.fill_(True)
        elif not bool(self.m1_fitted):
            raise ValueError("m1_epochs: M1 is not fitted yet; give m1_epochs > 0 (or copy a fitted VAE into .m1)")
        self.m1.requires_grad_(False)  # M1 stays fixed while M2 learns on its codes

    def _fit_svi(self, data: Any, labelled_share: float = 0.25, **options: Any):
        try:
            return super()._fit_svi(data, labelled_share, **options)
        finally:
            self.m1.requires_grad_(True)

    # The guide's z1 ~ q(z1 | x) comes from M1's frozen encoder; M2's parameters get no gradient through it.
    def _features_guide(self, x: torch.Tensor, part: str) -> torch.Tensor:
        with torch.no_grad():
            loc, scale = self.m1._qz(x, None)
        return pyro.sample(f"z1_{part}", dist.Normal(loc, scale).to_event(1))

    def _features_guide_detached(self, x: torch.Tensor) -> torch.Tensor:
        # the classification term on a fresh draw of z1 (the guide's is not visible from the model)
        with torch.no_grad():
            loc, scale = self.m1._qz(x, None)
            return loc + scale * torch.randn_like(loc)

    def _observe(self, part: str, pz1: dist.Distribution, x: torch.Tensor) -> None:
        z1 = pyro.sample(f"z1_{part}", pz1)
        pyro.sample(f"x_{part}", self.m1._px(self.m1.decoder(z1, None)), obs=x)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.m1._qz(x, None)[0]

    def _decode_features(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        z1 = self.decoder(_join(z, self._onehot(label)))  # the mean of p(z1 | y, z2)
        return torch.sigmoid(self.m1.decoder(z1, None)).reshape(len(z), -1)

    def _bound(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        loc, scale = self.m1._qz(x, None)
        z1 = loc + scale * torch.randn_like(loc)
        log_q = dist.Normal(loc, scale).log_prob(z1).sum(-1)
        return self.m1._log_px(self.m1.decoder(z1, None), x) + self._bound_features(z1, y) - log_q

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 3, (60,), generator=g)
        x = (torch.rand(60, 6, generator=g) < 0.2 + 0.3 * y[:, None]).float()
        labels = torch.where(torch.arange(60) < 15, y, -1)
        model = cls(num_classes=3, m1_latent_dim=3, m1_hidden=(8,), latent_dim=2, hidden=(8,))
        return ContractCase(model, (x, labels), {"steps": 10, "lr": 1e-2, "m1_epochs": 2},
                            sample_kwargs={"label": 1}, log_prob_data=x[:4])


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _tour(cls, out_dir: str, quick: bool):
    """The tour of the semi-supervised families: 50 labels on binarized 8x8 digits, the rest unlabelled."""
    import os

    import probgen
    from sklearn.linear_model import LogisticRegression

    from ...gallery import TourSection, demo_source, digit_agreement
    from ...plot import sample_grid, save_figure

    budget = {"SemiSupervisedVAE": 5 if quick else 40, "StackedSemiSupervisedVAE": 5 if quick else 30,
              "SemiSupervisedGAN": 40 if quick else 600}[cls.__name__]
    name = cls.__name__

    def demo():
        train = probgen.datasets.load("digits_binary", split="train")
        test = probgen.datasets.load("digits_binary", split="test")
        g = torch.Generator().manual_seed(0)
        labels = torch.full_like(train.y, -1)  # -1: unknown
        for c in range(10):  # 5 labels per digit, 1,388 images without a label
            rows = torch.nonzero(train.y == c).flatten()
            keep = rows[torch.randperm(len(rows), generator=g)[:5]]
            labels[keep] = c
        if name == "SemiSupervisedVAE":
            model = probgen.models.SemiSupervisedVAE(num_classes=10, latent_dim=8, hidden=(128,), alpha=20.0)
            model.fit((train.x, labels), epochs=budget, lr=3e-3, seed=0, progress=False)
        elif name == "StackedSemiSupervisedVAE":
            model = probgen.models.StackedSemiSupervisedVAE(num_classes=10, m1_latent_dim=16, m1_hidden=(128,),
                                                            latent_dim=4, hidden=(64,), alpha=20.0)
            model.fit((train.x, labels), epochs=budget, m1_epochs=2 * budget, lr=3e-3, seed=0, progress=False)
        else:
            model = probgen.models.SemiSupervisedGAN(num_classes=10, latent_dim=16, hidden=(128,),
                                                     critic_hidden=(128, 64))
            model.fit((train.x, labels), steps=budget, batch_size=100, seed=0, progress=False)
        error = float((model.predict(test.x) != test.y).float().mean())
        known = labels >= 0
        flat = train.x.reshape(len(train.x), -1).numpy()
        supervised = LogisticRegression(max_iter=2000).fit(flat[known.numpy()], labels[known].numpy())
        supervised_error = 1 - supervised.score(test.x.reshape(len(test.x), -1).numpy(), test.y.numpy())
        asked = torch.arange(10).repeat_interleave(6)
        samples = model.sample(len(asked), seed=0, label=asked) if name != "SemiSupervisedGAN" else model.sample(
            60, seed=0)
        return model, error, supervised_error, asked, samples

    model, error, supervised_error, asked, samples = demo()
    figures = {"test error, 50 labels": f"{100 * error:.1f}%",
               "logistic regression on the 50 labelled images alone": f"{100 * supervised_error:.1f}%"}
    if name == "SemiSupervisedGAN":
        caption = "60 draws of the SSL-GAN's generator (unconditional, as in the paper)"
        read = None
    else:
        read = digit_agreement(samples, asked)
        figures["samples read as the digit asked for"] = f"{100 * read:.0f}%"
        caption = "sample(6, label=c) for the digits 0-9, one row each (pixel probabilities)"
    title = "generator draws" if name == "SemiSupervisedGAN" else "sample(6, label=c), c = 0-9 by row"
    path = save_figure(sample_grid(samples, nrow=6 if name != "SemiSupervisedGAN" else 10, title=title),
                       os.path.join(out_dir, f"{cls.family}.png"))
    works = error < supervised_error
    note = "" if works else ("At this budget the model does not beat the supervised baseline on 8x8 digits; "
                             "`probgen bench semisupervised` measures it on 28x28 MNIST digits.")
    return TourSection(cls.family, f"{name}: 50 labels and 1,388 unlabelled 8x8 digits", [(path, caption)], figures,
                       demo_source(demo, budget=budget, name=name), "works" if works else "limited", note)


SemiSupervisedVAE.tour = classmethod(lambda cls, out_dir, quick=False: _tour(cls, out_dir, quick))
