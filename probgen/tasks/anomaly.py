"""Anomaly detection with any probgen model, behind PyOD's detector interface.

``AnomalyDetector`` wraps a probgen model (fitted, or fitted by the detector's own
``fit``) and offers the methods and attributes PyOD detectors have (``fit``,
``decision_function``, ``predict``, ``predict_proba``, ``fit_predict``,
``decision_scores_``, ``threshold_``, ``labels_``), so it drops into code written for
PyOD. Each family gets its natural score (see ``FAMILY_SCORES``); two published
corrections of likelihood scores are built in: the input-complexity correction of
Serrà et al. (2020) and the likelihood ratio against a background model of Ren et
al. (2019).
"""

from __future__ import annotations

__all__ = ["AnomalyDetector", "SCORES", "FAMILY_SCORES", "input_complexity", "perturb", "anomaly_scores",
           "anomaly_auc"]

import copy
import io
import math
import zlib
from typing import Any, Callable

import numpy as np
import torch

from ..core.checks import check_choice, check_positive, check_probability
from ..core.progress import progress_bar
from ..core.random import seeded

#: score name -> what it is (higher = more anomalous for every one)
SCORES = {
    "log_prob": "-log p(x): the exact log-likelihood, or the family's bound / estimate",
    "iwae": "-(importance-weighted bound on log p(x)) of a VAE, k = num_particles, the same draws for every example",
    "free_energy": "the RBM's free energy F(x) = -log p(x) - log Z (no partition function needed)",
    "reconstruction": "reconstruction error: autoencoders' own loss; |x - decode(encode(x))|^2 for a VAE; "
                      "for diffusion, noise to levels t_r (0.1, 0.3, 0.5, 0.7 of T) and denoise back with DDIM, "
                      "the errors standardized with the training scores and averaged (Graham et al. 2023)",
    "fanogan": "f-AnoGAN (Schlegl et al. 2019): image residual + critic-feature residual through the trained encoder",
    "denoising": "diffusion: mean squared error of the predicted noise at a few fixed steps (the same noise for all)",
    "tail": "-(sum over features of the log tail probabilities of the model's fitted marginals), each feature "
            "in the direction of its longer tail (side='longer'; COPOD's skewness rule, Li et al. 2020) or "
            "side='upper' / 'lower' / 'both'; models with log_tail(x, side), such as GaussianCopula",
    "score": "the model's own score(x)",
}

#: the default score of each family (``score="auto"``)
FAMILY_SCORES = {
    "flow": "log_prob",
    "gaussian_copula": "log_prob",
    "pixel_cnn": "log_prob",
    "pixel_rnn": "log_prob",
    "bayesian_network": "log_prob",
    "markov_chain": "log_prob",
    "text_generator": "log_prob",
    "spread": "log_prob",
    "linear_regression": "log_prob",
    "vae": "iwae",
    "rbm": "free_energy",
    "autoencoder": "reconstruction",
    "adversarial_autoencoder": "reconstruction",
    "gan": "fanogan",
    "conditional_gan": "fanogan",
    "text_to_image_gan": "fanogan",
    "diffusion": "denoising",
}

# scores that are -log p(x) up to a constant (in nats): the corrections apply to these
_LIKELIHOOD_SCORES = ("log_prob", "iwae", "free_energy")
CORRECTIONS = (None, "complexity", "likelihood_ratio")


# ------------------------------------------------------------------ helpers
def input_complexity(x: Any, compressor: str = "png") -> np.ndarray:
    """Bits a lossless compressor needs for each example (Serrà et al. 2020's complexity L(x)).

    ``x``: images ``(n, C, H, W)`` / ``(n, H, W)`` with values in [0, 1] (quantised to 8 bits), or
    any ``(n, ...)`` array in [0, 1] with ``compressor="zlib"``. ``"png"`` uses Pillow's PNG
    encoder (the paper's simplest choice), ``"zlib"`` deflate on the raw bytes.

    Example:
        >>> import torch
        >>> blank, noise = torch.zeros(1, 1, 28, 28), torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        >>> bits = input_complexity(torch.cat([blank, noise]))
        >>> bool(bits[0] < bits[1])
        True
    """
    check_choice("compressor", compressor, ("png", "zlib"))
    a = _as_numpy(x, "x")
    if a.ndim < 2:
        raise ValueError(f"x: expected a batch of examples (n, ...), got shape {a.shape}")
    if a.size and (np.nanmin(a) < 0 or np.nanmax(a) > 1):
        raise ValueError(f"x: expected values in [0, 1] (they are quantised to 8 bits), "
                         f"got range [{a.min():.3g}, {a.max():.3g}]")
    q = np.round(a * 255).astype(np.uint8)
    if compressor == "zlib":
        return np.array([8.0 * len(zlib.compress(row.tobytes(), 9)) for row in q])
    from PIL import Image

    if q.ndim == 4:
        if q.shape[1] not in (1, 3):
            raise ValueError(f"x: PNG needs 1 or 3 channels, got {q.shape[1]}; use compressor='zlib'")
        q = q[:, 0] if q.shape[1] == 1 else q.transpose(0, 2, 3, 1)
    elif q.ndim != 3:
        raise ValueError(f"x: PNG needs images (n, H, W) or (n, C, H, W), got shape {a.shape}; use compressor='zlib'")
    bits = []
    for image in q:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", optimize=True)
        bits.append(8.0 * len(buffer.getvalue()))
    return np.array(bits)


def perturb(x: Any, rate: float = 0.2, seed: int | None = 0, binary: bool | None = None) -> torch.Tensor:
    """Replace a fraction ``rate`` of the entries of ``x`` by uniform noise (Ren et al. 2019's
    background data): uniform on [0, 1], or fair coin flips for binary data.

    Example:
        >>> x = torch.zeros(2, 100)
        >>> float((perturb(x, rate=0.5, seed=0, binary=False) != 0).float().mean()) > 0.4
        True
    """
    check_probability("rate", rate)
    t = torch.as_tensor(_as_numpy(x, "x")).float()
    if binary is None:
        binary = bool(torch.all((t == 0) | (t == 1)))
    with seeded(seed):
        mask = torch.rand(t.shape) < rate
        noise = (torch.rand(t.shape) < 0.5).float() if binary else torch.rand(t.shape)
    return torch.where(mask, noise, t)


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "x") and hasattr(x, "y") and not isinstance(x, torch.Tensor):  # a probgen Dataset
        x = x.x
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a numeric array, got {type(x).__name__}") from None


# -------------------------------------------------------------- the detector
class AnomalyDetector:
    r"""A PyOD-style outlier detector built on a probgen model (higher score = more anomalous).

    ``fit(X)`` trains the model on ``X`` first when ``fit_options`` is given (a dict of
    options for ``model.fit``, ``{}`` for the family's defaults), else takes the model as
    fitted; it then scores ``X`` (``decision_scores_``) and sets ``threshold_`` to their
    ``1 - contamination`` quantile, so that about a ``contamination`` share of the training
    points is flagged (``labels_``). ``decision_function(X)`` scores new data, ``predict(X)``
    flags scores above the threshold (1 = outlier, as in PyOD).

    The score (``score="auto"``: ``FAMILY_SCORES[model.family]``) is one of ``SCORES``:
    ``-log p(x)`` for exact-likelihood families (flows, PixelCNN/RNN, Bayesian networks,
    Markov chains), the importance-weighted bound for a VAE, the free energy for an RBM,
    reconstruction error for autoencoders, f-AnoGAN for GANs (its encoder is trained by
    ``fit`` when it is not yet), the denoising error for diffusion models; or a callable
    ``score(model, x) -> tensor``. Stochastic scores use the same random draws for every
    example (common random numbers), so a score does not depend on the batch it is in.

    Likelihood scores can be corrected (``correction``):

    * ``"complexity"``: ``S(x) = -log2 p(x) - L(x)`` with ``L(x)`` the bits a lossless
      compressor needs for ``x`` (``input_complexity``; Serrà et al. 2020), which removes
      the bias of likelihoods toward simple inputs (blank or low-ink images);
    * ``"likelihood_ratio"``: ``-(log p(x) - log p_0(x))`` with ``p_0`` a ``background``
      model of the same kind trained on perturbed data (``perturb``; Ren et al. 2019). Give
      a fitted background, or an unfitted one that ``fit`` trains with ``fit_options``.

    Arguments:
        model: a probgen model (any family with a score).
        score: ``"auto"``, a name in ``SCORES``, or a callable ``(model, x) -> scores``.
        contamination: expected share of outliers in the training data, in (0, 0.5].
        correction: ``None``, ``"complexity"`` or ``"likelihood_ratio"``.
        fit_options: options for ``model.fit`` (``None``: the model is already fitted).
        score_options: options of the score (``num_particles``, ``seed``, ``steps``, ...).
        background: the background model for ``correction="likelihood_ratio"``.
        background_rate: share of entries ``perturb`` replaces for the background data.
        compressor: ``"png"`` or ``"zlib"`` for ``correction="complexity"``.
        batch_size: examples scored at a time.
        progress: show a progress bar while scoring.

    References:
        Schlegl et al. 2019, f-AnoGAN (Medical Image Analysis); Ren et al. 2019, Likelihood
        Ratios for Out-of-Distribution Detection (NeurIPS); Serrà et al. 2020, Input
        Complexity and Out-of-distribution Detection with Likelihood-based Generative Models
        (ICLR); Zhao et al. 2019, PyOD (JMLR).

    Example:
        >>> import torch, probgen
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(300, 2, generator=g)
        >>> det = AnomalyDetector(probgen.models.Flow(2, kind="maf", transforms=1, hidden=(8,)),
        ...                       contamination=0.1, fit_options=dict(steps=50, lr=1e-2, seed=0, progress=False))
        >>> det = det.fit(x)
        >>> round(float(det.labels_.mean()), 2), det.predict(torch.tensor([[0.0, 0.0], [6.0, 6.0]])).tolist()
        (0.1, [0, 1])
    """

    def __init__(self, model: Any, score: str | Callable = "auto", contamination: float = 0.05, *,
                 correction: str | None = None, fit_options: dict | None = None, score_options: dict | None = None,
                 background: Any = None, background_rate: float = 0.2, compressor: str = "png",
                 batch_size: int = 512, progress: bool = False):
        from ..core.base import Model

        if not isinstance(model, Model):
            raise ValueError(f"model: expected a probgen model (probgen.Model), got {type(model).__name__}")
        self.model = model
        self.contamination = _check_contamination(contamination)
        self.correction = check_choice("correction", correction, CORRECTIONS)
        self.score_name = _resolve_score(model, score)
        if self.correction and not callable(self.score_name) and self.score_name not in _LIKELIHOOD_SCORES:
            raise ValueError(f"correction: {correction!r} corrects a likelihood score ({', '.join(_LIKELIHOOD_SCORES)}); "
                             f"the score here is {self.score_name!r}")
        if self.correction == "likelihood_ratio":
            if background is None:
                raise ValueError("background: correction='likelihood_ratio' needs a background model "
                                 "(e.g. a copy of the model, trained on perturb(x) by fit when fit_options is given)")
            if not isinstance(background, Model):
                raise ValueError(f"background: expected a probgen model, got {type(background).__name__}")
        elif background is not None:
            raise ValueError("background: only used with correction='likelihood_ratio'")
        self.background = background
        self.background_rate = check_probability("background_rate", background_rate)
        self.compressor = check_choice("compressor", compressor, ("png", "zlib"))
        if fit_options is not None and not isinstance(fit_options, dict):
            raise ValueError(f"fit_options: expected a dict of options for model.fit or None, got {fit_options!r}")
        self.fit_options = fit_options
        self.score_options = dict(score_options or {})
        self.batch_size = int(check_positive("batch_size", batch_size, integer=True))
        self.progress = bool(progress)
        self._example_shape: tuple | None = None
        self._columns = None

    def __repr__(self) -> str:
        name = self.score_name if isinstance(self.score_name, str) else getattr(self.score_name, "__name__", "callable")
        extra = f", correction={self.correction!r}" if self.correction else ""
        return (f"AnomalyDetector({type(self.model).__name__}, score={name!r}, "
                f"contamination={self.contamination}{extra})")

    # ------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any = None) -> "AnomalyDetector":
        """Train the model (when ``fit_options`` is given), score ``X``, set the threshold.

        ``y`` is ignored (PyOD's unsupervised convention). Returns the detector.
        """
        self._example_shape = _example_shape(X, "X")
        self._columns = None
        if self.fit_options is not None:
            self.model.fit(X, **self.fit_options)
            if self.correction == "likelihood_ratio":
                self.background.fit(perturb(X, self.background_rate, seed=self.fit_options.get("seed", 0)),
                                    **self.fit_options)
        if self.score_name == "fanogan" and not bool(getattr(self.model, "encoder_fitted", True)):
            options = {k: v for k, v in (self.fit_options or {}).items() if k in ("seed", "progress", "lr")}
            self.model.fit_encoder(X, **{"progress": self.progress, **options, **self.score_options.get("encoder", {})})
        raw = self._raw_scores(X)
        if raw.ndim == 2:  # several scores per example: standardized by their training values, averaged
            self._columns = (raw.mean(0), np.maximum(raw.std(0), 1e-12))
        self.decision_scores_ = self._combine(raw)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        self._mu, self._sigma = float(np.mean(self.decision_scores_)), float(np.std(self.decision_scores_))
        self._lo, self._hi = float(np.min(self.decision_scores_)), float(np.max(self.decision_scores_))
        return self

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X)`` and return ``labels_``."""
        return self.fit(X).labels_

    # ------------------------------------------------------------- scoring
    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score of each example of ``X`` (higher = more anomalous), a NumPy array."""
        return self._combine(self._raw_scores(X))

    def _combine(self, raw: np.ndarray) -> np.ndarray:
        if raw.ndim == 1:
            return raw
        if getattr(self, "_columns", None) is None:
            raise ValueError("decision_function: this score has several columns, standardized with the training "
                             "scores; call fit(X) first")
        mean, scale = self._columns
        return ((raw - mean) / scale).mean(1)

    def _raw_scores(self, X: Any) -> np.ndarray:
        if self._example_shape is not None:
            shape = _example_shape(X, "X")
            if shape is not None and shape != self._example_shape:
                raise ValueError(f"X: expected examples of shape {self._example_shape} (as in fit), got {shape}")
        n = _length(X)
        if n == 0:
            raise ValueError("X: expected at least one example, got none")
        parts = []
        bar = progress_bar(range(0, n, self.batch_size), enabled=self.progress, desc="anomaly scores")
        for start in bar:
            batch = _rows(X, slice(start, min(n, start + self.batch_size)))
            s = self._score_batch(self.model, batch)
            if self.correction == "likelihood_ratio":
                s = s - self._score_batch(self.background, batch)
            elif self.correction == "complexity":
                s = s / math.log(2) - input_complexity(_first(batch), self.compressor)
            parts.append(s)
        bar.close()
        out = np.concatenate(parts).astype(np.float64)
        if not np.all(np.isfinite(out)):
            raise ValueError("the model gave non-finite scores (NaN or inf); check the input against the training data")
        return out

    def _score_batch(self, model: Any, batch: Any) -> np.ndarray:
        fn = self.score_name if callable(self.score_name) else _SCORE_FUNCTIONS[self.score_name]
        options = {k: v for k, v in self.score_options.items() if k != "encoder"}
        with torch.no_grad():
            s = fn(model, batch, **options) if not callable(self.score_name) else fn(model, batch)
        s = torch.as_tensor(s).detach().double().cpu().numpy()
        s = s.reshape(len(s), -1) if s.ndim == 2 and s.shape[1] > 1 else s.reshape(-1)
        if len(s) != _length(batch):
            raise ValueError(f"score: expected one score per example ({_length(batch)}), got {len(s)}")
        return s

    # ---------------------------------------------------------- predictions
    def _require_fitted(self, what: str) -> None:
        if not hasattr(self, "threshold_"):
            raise ValueError(f"{what}: call fit(X) first (it sets the threshold from the training scores)")

    def predict(self, X: Any, return_confidence: bool = False):
        """1 for examples scored above ``threshold_`` (outliers), 0 otherwise.

        With ``return_confidence=True`` also ``predict_confidence(X)``, as in PyOD.
        """
        self._require_fitted("predict")
        labels = (self.decision_function(X) > self.threshold_).astype(int)
        return (labels, self.predict_confidence(X)) if return_confidence else labels

    def predict_proba(self, X: Any, method: str = "linear") -> np.ndarray:
        """``(n, 2)`` probabilities of [inlier, outlier], PyOD's two ways.

        ``"linear"``: the score min-max scaled with the training scores, clipped to [0, 1];
        ``"unify"``: the Gaussian CDF of the score standardised with the training scores
        (Kriegel et al. 2011).
        """
        self._require_fitted("predict_proba")
        check_choice("method", method, ("linear", "unify"))
        s = self.decision_function(X)
        if method == "linear":
            p = np.clip((s - self._lo) / max(self._hi - self._lo, 1e-12), 0, 1)
        else:
            from scipy.special import erf

            p = np.clip(erf((s - self._mu) / (max(self._sigma, 1e-12) * math.sqrt(2))), 0, 1)
        return np.stack([1 - p, p], 1)

    def predict_confidence(self, X: Any) -> np.ndarray:
        """How sure ``predict`` is, in [0, 1]: the share of training scores on the same side of the
        threshold as each example's score is of all training scores on that side (simplified from
        PyOD's ExCeeD bound)."""
        self._require_fitted("predict_confidence")
        s = self.decision_function(X)
        train = np.sort(self.decision_scores_)
        below = np.searchsorted(train, s, side="right") / len(train)
        q = 1 - self.contamination
        return np.where(s > self.threshold_, np.clip((below - q) / max(1 - q, 1e-12), 0, 1),
                        np.clip((q - below) / max(q, 1e-12), 0, 1))

    def get_params(self, deep: bool = False) -> dict:
        """The constructor's arguments (scikit-learn style)."""
        return {"model": self.model, "score": self.score_name, "contamination": self.contamination,
                "correction": self.correction, "fit_options": self.fit_options, "score_options": self.score_options,
                "background": self.background, "background_rate": self.background_rate,
                "compressor": self.compressor, "batch_size": self.batch_size, "progress": self.progress}

    def clone(self) -> "AnomalyDetector":
        """A fresh copy with copies of the (untrained or trained) models."""
        params = self.get_params()
        params["model"] = copy.deepcopy(self.model)
        params["background"] = copy.deepcopy(self.background)
        return AnomalyDetector(**params)


def _check_contamination(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value <= 0.5:
        raise ValueError(f"contamination: expected a share of outliers in (0, 0.5], got {value!r}")
    return float(value)


def _resolve_score(model: Any, score: Any) -> str | Callable:
    if callable(score):
        return score
    if score != "auto":
        if not isinstance(score, str) or score not in SCORES:
            raise ValueError(f"score: expected 'auto', a callable or one of {list(SCORES)}, got {score!r}")
        return score
    family = getattr(model, "family", "")
    if family in FAMILY_SCORES:
        return FAMILY_SCORES[family]
    from ..core.base import Model

    if type(model).score is not Model.score:
        return "score"
    if getattr(model, "log_prob_kind", None) is not None:
        return "log_prob"
    raise ValueError(f"model: the {family or type(model).__name__!r} family has no anomaly score (no log_prob and "
                     "no score); pass score=callable(model, x) -> scores")


# ------------------------------------------------------------ batch plumbing
def _first(batch: Any) -> Any:
    return batch[0] if isinstance(batch, tuple) else batch


def _example_shape(X: Any, name: str) -> tuple | None:
    """Shape of one example of a numeric batch (None for tables and sequences, checked by the model)."""
    x = _first(X)
    if hasattr(x, "x") and hasattr(x, "y") and not isinstance(x, torch.Tensor):
        x = x.x
    if isinstance(x, (torch.Tensor, np.ndarray)):
        if x.ndim == 0:
            raise ValueError(f"{name}: expected a batch of examples (n, ...), got a scalar")
        if torch.is_floating_point(torch.as_tensor(x[:1])) and not bool(torch.isfinite(torch.as_tensor(x)).all()):
            raise ValueError(f"{name}: contains NaN or inf")
        return tuple(x.shape[1:])
    return None


def _length(X: Any) -> int:
    return len(_first(X))


def _rows(X: Any, s: slice) -> Any:
    if isinstance(X, tuple):
        return tuple(_rows(part, s) for part in X)
    if hasattr(X, "iloc"):
        return X.iloc[s]
    if hasattr(X, "x") and hasattr(X, "y") and not isinstance(X, torch.Tensor):
        return X.x[s]
    return X[s]


def _call(method: Callable, batch: Any, **kwargs: Any):
    return method(*batch, **kwargs) if isinstance(batch, tuple) else method(batch, **kwargs)


# ------------------------------------------------------------------- scores
def _score_log_prob(model, batch, **options):
    return -_call(model.log_prob, batch, **options)


def _score_model(model, batch, **options):
    return _call(model.score, batch, **options)


def _score_free_energy(model, batch):
    return _call(model.free_energy, batch)


def _score_iwae(model, batch, num_particles: int = 16, seed: int = 0):
    """IWAE bound with the same ``num_particles`` standard-normal draws for every example.

    Written here (not ``VAE.log_prob``, which draws fresh noise per chunk) so that an
    example's score does not depend on the batch it is scored in.
    """
    if getattr(model, "family", "") != "vae":
        raise ValueError(f"score: 'iwae' is the VAE's bound, got a {type(model).__name__}")
    check_positive("num_particles", num_particles, integer=True)
    x, y = model._split(batch if not isinstance(batch, tuple) else batch[0],
                        None if not isinstance(batch, tuple) else batch[1], name="x")
    onehot = model._onehot(y)
    loc, scale = model._qz(x, onehot)
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn(num_particles, 1, model.latent_dim, generator=g).to(loc)
    z = loc + scale * eps  # (k, n, latent)
    oh = None if onehot is None else onehot.repeat(num_particles, 1)
    dec = model.decoder(z.reshape(-1, model.latent_dim), oh).reshape(num_particles, len(x), *model.data_shape)
    q = torch.distributions.Normal(loc, scale)
    log_w = (model._log_px(dec, x) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
             - q.log_prob(z).sum(-1))
    return -(torch.logsumexp(log_w, 0) - math.log(num_particles))


def _score_reconstruction(model, batch, **options):
    family = getattr(model, "family", "")
    if family in ("autoencoder", "adversarial_autoencoder"):
        return _call(model.score, batch, **options)
    if family == "vae":
        x = _first(batch)
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        recon = _call(model.reconstruct, batch)
        return (recon.cpu() - x.reshape(recon.shape).cpu()).pow(2).reshape(len(x), -1).sum(1)
    if family == "diffusion":
        return _diffusion_reconstruction(model, batch, **options)
    raise ValueError(f"score: 'reconstruction' is defined for autoencoders, VAEs and diffusion models, "
                     f"got a {type(model).__name__}")


def _score_tail(model, batch, side: str = "longer"):
    if not hasattr(model, "log_tail"):
        raise ValueError(f"score: 'tail' needs a model with log_tail(x, side) (e.g. GaussianCopula), "
                         f"got a {type(model).__name__}")
    return -_call(model.log_tail, batch, side=side).sum(1)


def _score_fanogan(model, batch, **options):
    if not hasattr(model, "fit_encoder"):
        raise ValueError(f"score: 'fanogan' needs a GAN with an encoder, got a {type(model).__name__}")
    return _call(model.score, batch, **options)


def _diffusion_inputs(model, batch):
    if getattr(model, "family", "") != "diffusion":
        raise ValueError(f"score: this score is defined for diffusion models, got a {type(model).__name__}")
    x, y = (batch if isinstance(batch, tuple) else (batch, None))
    x = model._check_x(x)
    return x, model._labels(y, len(x))


def _shared_noise(shape, count: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(count, *shape, generator=g).to(like)


def _score_denoising(model, batch, steps: int = 10, t_max: float = 0.5, seed: int = 0):
    """Mean squared error of the EMA network's noise prediction at ``steps`` fixed steps in
    ``[0.02 T, t_max T]``, one fixed noise draw per step shared by all examples."""
    x, y = _diffusion_inputs(model, batch)
    check_positive("steps", steps, integer=True)
    z0 = model._to_latent(x)
    T = model.timesteps
    ts = torch.linspace(0.02 * T, t_max * (T - 1), steps).round().long().clamp(0, T - 1).tolist()
    noise = _shared_noise(model.data_shape, len(ts), seed, z0)
    total = torch.zeros(len(x), device=z0.device)
    for j, i in enumerate(ts):
        t = torch.full((len(x),), i, device=z0.device, dtype=torch.long)
        eps = noise[j].expand_as(z0)
        pred = model._predict_eps(model.ema_network, model.schedule.q_sample(z0, t, eps), t, y)
        total += (pred - eps).pow(2).reshape(len(x), -1).mean(1)
    return total / len(ts)


def _diffusion_reconstruction(model, batch, t_start: float | tuple = (0.1, 0.3, 0.5, 0.7), steps: int = 10,
                              seed: int = 0):
    """Noise to step ``t_start T`` (a fixed draw for all examples), run DDIM back in ``steps``
    steps, and measure the squared error of the reconstruction (in data units).

    With several levels ``t_start`` (the default) the result has one column per level; the
    detector standardizes each column with its training scores and averages them (the
    multi-level reconstruction of Graham et al. 2023)."""
    x, y = _diffusion_inputs(model, batch)
    z0 = model._to_latent(x)
    levels = [float(t_start)] if isinstance(t_start, (int, float)) else [float(t) for t in t_start]
    if not levels or any(not 0 < t <= 1 for t in levels):
        raise ValueError(f"t_start: expected noise levels in (0, 1], got {t_start!r}")
    out = []
    for level in levels:
        t_r = max(1, int(round(level * (model.timesteps - 1))))
        seq = sorted({int(round(v)) for v in torch.linspace(0, t_r, max(2, steps)).tolist()})
        eps = _shared_noise(model.data_shape, 1, seed, z0)[0].expand_as(z0)
        t = torch.full((len(x),), t_r, device=z0.device, dtype=torch.long)
        z = model._run_chain(model.schedule.q_sample(z0, t, eps), seq, 0.0, y, 0.0, True, False)
        out.append((model._from_latent(z) - x).pow(2).reshape(len(x), -1).sum(1))
    return out[0] if len(out) == 1 else torch.stack(out, 1)


_SCORE_FUNCTIONS: dict[str, Callable] = {
    "log_prob": _score_log_prob,
    "iwae": _score_iwae,
    "free_energy": _score_free_energy,
    "reconstruction": _score_reconstruction,
    "fanogan": _score_fanogan,
    "denoising": _score_denoising,
    "tail": _score_tail,
    "score": _score_model,
}


# ------------------------------------------------------- the simple helpers
def anomaly_scores(model: Any, x: Any, seed: int | None = 0, **options: Any) -> torch.Tensor:
    """``model.score(x, **options)`` as a 1-D tensor (higher = more anomalous).

    Works for every probgen family: reconstruction error for autoencoders, the
    negative ELBO (or IWAE bound with ``num_particles=k``) for VAEs, -log p(x) for
    exact-likelihood models. A random score (a VAE's ELBO draws) is drawn under
    ``seed``, so it repeats (``None``: the global random state). ``AnomalyDetector``
    adds thresholds, per-family scores and corrections.
    """
    if not hasattr(model, "score"):
        raise ValueError(f"model: expected a model with score(x), got {type(model).__name__}")
    with seeded(seed):
        s = torch.as_tensor(model.score(x, **options)).detach().reshape(-1).cpu()
    if not torch.all(torch.isfinite(s)):
        raise ValueError("model.score returned non-finite values")
    return s


def anomaly_auc(model: Any, normal: Any, anomalous: Any, seed: int | None = 0, **options: Any) -> float:
    """ROC AUC of separating ``anomalous`` from ``normal`` examples by ``model.score``.

    0.5 is chance, 1.0 perfect. Random scores are drawn under ``seed`` (see ``anomaly_scores``).

    Example:
        >>> import torch, probgen
        >>> x = torch.rand(64, 8) * 0.2
        >>> ae = probgen.models.Autoencoder(latent_dim=2, hidden=(16,))
        >>> _ = ae.fit(x, steps=30, lr=1e-2, progress=False, seed=0)
        >>> probgen.tasks.anomaly_auc(ae, x[:32], 1 - x[:32]) > 0.9
        True
    """
    from sklearn.metrics import roc_auc_score

    s_normal = anomaly_scores(model, normal, seed=seed, **options)
    s_anomalous = anomaly_scores(model, anomalous, seed=seed, **options)
    if not len(s_normal) or not len(s_anomalous):
        raise ValueError("normal, anomalous: expected at least one example each")
    labels = np.r_[np.zeros(len(s_normal)), np.ones(len(s_anomalous))]
    return float(roc_auc_score(labels, np.r_[s_normal.numpy(), s_anomalous.numpy()]))
