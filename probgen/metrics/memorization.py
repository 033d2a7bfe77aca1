"""Memorization and overfitting: is the generator handing back its training records?

Every metric compares the training set with a *holdout* the model never saw:
generated data that sits much closer to training records than to holdout records
(or a likelihood much higher on training than on holdout data) means the model
memorized. With as many holdout as training rows (``distance_to_closest_record``
subsamples the training set to the holdout's size) a model that generalizes
gives ``closer_to_train`` ≈ 0.5 and a membership-inference AUC ≈ 0.5.

References:
    Platzer & Reutterer 2021, Holdout-based fidelity and privacy assessment of
    mixed-type synthetic data (DCR, NNDR); Shokri et al. 2017 and Hayes et al.
    2019, LOGAN: membership inference attacks against generative models.
"""

from __future__ import annotations

__all__ = ["distance_to_closest_record", "nn_distance_ratio", "membership_inference_auc", "log_prob_gap",
           "memorization_core"]

from typing import Any

import numpy as np
import torch

from ..core.random import seeded
from ._common import as_samples, check_count, embed_sets, exact_distances, knn_distances, pairwise_blocks, subsample


def _triple(fake, train, holdout, metric, features):
    if holdout is None:
        raise ValueError(f"{metric}: needs a holdout set (real data the model was not trained on)")
    tr, ho, fk = embed_sets([train, holdout, fake], ["train", "holdout", "fake"], metric, features, minimum=2)
    return fk, tr, ho


def _col_argmin(a: torch.Tensor, b: torch.Tensor, k_rows: int):
    """One pass over ``a`` x ``b`` blocks: each row's ``k_rows`` nearest in ``b``, each column's nearest in ``a``."""
    rows = []
    best = torch.full((len(b),), float("inf"))
    arg = torch.zeros(len(b), dtype=torch.long)
    for start, d2 in pairwise_blocks(a, b):
        rows.append(torch.topk(d2, k_rows, dim=1, largest=False).indices)
        v, i = d2.min(0)
        better = v < best
        best = torch.where(better, v, best)
        arg = torch.where(better, i + start, arg)
    return torch.cat(rows), arg


def memorization_core(fk: torch.Tensor, tr: torch.Tensor, ho: torch.Tensor, *, seed: int = 0,
                      tolerance: float = 1e-6, reference: int = 2000) -> dict:
    """All distance-based memorization statistics from three passes over distance blocks.

    ``fk``, ``tr``, ``ho``: generated, training and holdout samples already in one
    feature space. Train and holdout are subsampled to equal size for the
    comparisons (closer-to-train, membership inference); copies and NNDR use all
    training rows. Returns per-sample arrays (float64 numpy).
    """
    size = min(len(tr), len(ho))
    g = torch.Generator().manual_seed(seed)
    sub_tr = torch.randperm(len(tr), generator=g)[:size] if len(tr) > size else torch.arange(len(tr))
    sub_ho = torch.randperm(len(ho), generator=g)[:size] if len(ho) > size else torch.arange(len(ho))
    ho_s = ho[sub_ho]
    # pass 1: generated vs all training rows
    idx2, col_tr = _col_argmin(fk, tr, 2)
    d2 = exact_distances(fk, tr, idx2)
    d2, order = d2.sort(dim=1)
    nearest_tr = idx2.gather(1, order)[:, 0]
    # pass 2: generated vs holdout (equal size)
    idx_h, col_ho = _col_argmin(fk, ho_s, 1)
    dcr_ho = exact_distances(fk, ho_s, idx_h)[:, 0]
    if len(sub_tr) == len(tr):
        dcr_tr_eq = d2[:, 0]
    else:  # nearest among the equal-size training subsample
        dcr_tr_eq = knn_distances(fk, tr[sub_tr], 1)[0][:, 0]
    member = exact_distances(tr[sub_tr], fk, col_tr[sub_tr][:, None])[:, 0]
    non_member = exact_distances(ho_s, fk, col_ho[:, None])[:, 0]
    # pass 3: what a fresh real sample's NNDR looks like
    ref = subsample(ho, reference, seed + 7)
    dref = knn_distances(ref, tr, 2)[0]
    ratio = lambda d: (d[:, 0] / d[:, 1].clamp(min=1e-300)).numpy()  # noqa: E731
    return {"dcr_train": dcr_tr_eq.numpy(), "dcr_holdout": dcr_ho.numpy(), "dcr_train_all": d2[:, 0].numpy(),
            "nearest_train": nearest_tr.numpy(), "nndr": ratio(d2), "nndr_holdout": ratio(dref),
            "mia_member": -member.numpy(), "mia_non_member": -non_member.numpy(), "tolerance": tolerance}


def summarize(core: dict) -> dict:
    """The scalar memorization metrics of ``memorization_core``'s arrays."""
    d_tr, d_ho = core["dcr_train"], core["dcr_holdout"]
    med_tr, med_ho = float(np.median(d_tr)), float(np.median(d_ho))
    closer = (d_tr < d_ho) + 0.5 * (d_tr == d_ho)
    return {"dcr_train": med_tr, "dcr_holdout": med_ho, "dcr_ratio": med_tr / med_ho if med_ho > 0 else float("nan"),
            "closer_to_train": float(closer.mean()),
            "exact_copies": float((core["dcr_train_all"] <= core["tolerance"]).mean()),
            "nndr_median": float(np.median(core["nndr"])), "nndr_holdout_median": float(np.median(core["nndr_holdout"])),
            "share_below_0.5": float((core["nndr"] < 0.5).mean()),
            "auc_distance": _auc(core["mia_member"], core["mia_non_member"])}


def distance_to_closest_record(fake: Any, train: Any, holdout: Any, *, features: Any = None, seed: int = 0,
                               tolerance: float = 1e-6) -> dict:
    """Distance from each generated sample to its closest training and holdout record.

    Returns ``dict(dcr_train, dcr_holdout, dcr_ratio, closer_to_train, exact_copies)``:
    the median distances, their ratio (< 1: generated data hugs the training set),
    the share of generated samples closer to the training set than to the holdout
    (0.5 ideal, 1 = memorized) and the share that are copies of a training record
    (distance ≤ ``tolerance``, over all training rows). Train and holdout are
    subsampled to equal size for the comparison: give a holdout as large as the
    training set where you can.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> train, holdout = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
        >>> distance_to_closest_record(train[:100], train, holdout)["closer_to_train"]
        1.0
    """
    fk, tr, ho = _triple(fake, train, holdout, "distance_to_closest_record", features)
    s = summarize(memorization_core(fk, tr, ho, seed=seed, tolerance=tolerance))
    return {k: s[k] for k in ("dcr_train", "dcr_holdout", "dcr_ratio", "closer_to_train", "exact_copies")}


def nn_distance_ratio(fake: Any, train: Any, holdout: Any | None = None, *, features: Any = None,
                      seed: int = 0) -> dict:
    """Nearest-neighbour distance ratio: distance to the closest / second-closest training record.

    Near 0 a generated sample sits on one training record (a copy or near copy);
    for samples spread like the data it is close to 1. With a holdout, the same
    ratio for holdout records gives the reference a fresh real sample reaches.

    Returns ``dict(nndr_median, nndr_holdout_median, share_below_0.5)``.

    Example:
        >>> import torch
        >>> x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
        >>> nn_distance_ratio(x[:50], x)["nndr_median"]
        0.0
    """
    sets = [train, fake] + ([holdout] if holdout is not None else [])
    names = ["train", "fake"] + (["holdout"] if holdout is not None else [])
    embedded = embed_sets(sets, names, "nn_distance_ratio", features, minimum=2)
    tr, fk = embedded[0], embedded[1]
    d = knn_distances(fk, tr, 2)[0]
    ratio = d[:, 0] / d[:, 1].clamp(min=1e-300)
    out = {"nndr_median": float(np.median(ratio.numpy())), "nndr_holdout_median": float("nan"),
           "share_below_0.5": float((ratio < 0.5).double().mean())}
    if holdout is not None:
        dh = knn_distances(subsample(embedded[2], 2000, seed), tr, 2)[0]
        out["nndr_holdout_median"] = float(np.median((dh[:, 0] / dh[:, 1].clamp(min=1e-300)).numpy()))
    return out


def _auc(members: np.ndarray, non_members: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(y, np.r_[members, non_members]))


def membership_inference_auc(fake: Any, train: Any, holdout: Any, *, model: Any = None, features: Any = None,
                             seed: int = 0) -> dict:
    """AUC of an attacker telling training records from holdout records.

    The distance attack scores each candidate record by minus its distance to the
    closest generated sample (it only sees the generated data); with a ``model``
    that has ``log_prob``, the likelihood attack scores by ``log_prob``. 0.5 means
    no leak; 1.0 means every training record is recognised. Train and holdout are
    subsampled to the same size.

    Returns ``dict(auc_distance, auc_log_prob)`` (``nan`` when there is no likelihood).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> train, holdout = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
        >>> membership_inference_auc(train, train, holdout)["auc_distance"]
        1.0
    """
    fk, tr, ho = _triple(fake, train, holdout, "membership_inference_auc", features)
    core = memorization_core(fk, tr, ho, seed=seed)
    out = {"auc_distance": _auc(core["mia_member"], core["mia_non_member"]), "auc_log_prob": float("nan")}
    if model is not None and _has_log_prob(model):
        gap = log_prob_gap(model, train, holdout, seed=seed)
        out["auc_log_prob"] = _auc(gap["_train_values"], gap["_holdout_values"])
    return out


def _has_log_prob(model: Any) -> bool:
    if not hasattr(model, "log_prob"):
        return False
    kind = getattr(model, "log_prob_kind", "exact")
    return kind is not None


def log_prob_gap(model: Any, train: Any, holdout: Any, *, seed: int = 0, max_samples: int | None = 5000) -> dict:
    """Mean ``log_prob`` on training data minus mean ``log_prob`` on holdout data.

    Overfitted models score their training data much higher than unseen data; a
    gap near 0 (relative to the spread of ``log_prob``) means no overfitting.
    ``log_prob_kind`` tells whether the values are exact, a bound or an estimate; a
    random estimate (a VAE's ELBO) is drawn under ``seed``, so a report repeats exactly.

    Returns ``dict(train, holdout, gap, kind)`` (plus the per-row values under
    private keys for ``membership_inference_auc``).

    Example:
        >>> import torch
        >>> class Gauss:
        ...     log_prob_kind = "exact"
        ...     def log_prob(self, x): return torch.distributions.Normal(0., 1.).log_prob(x).sum(-1)
        >>> g = torch.Generator().manual_seed(0)
        >>> r = log_prob_gap(Gauss(), torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g))
        >>> abs(r["gap"]) < 0.1
        True
    """
    if not _has_log_prob(model):
        raise ValueError("log_prob_gap: the model has no log_prob (log_prob_kind is None); "
                         "use distance_to_closest_record or membership_inference_auc on its samples")
    values = {}
    for name, data in (("train", train), ("holdout", holdout)):
        t = data.x if hasattr(data, "x") and isinstance(getattr(data, "x"), torch.Tensor) else data
        if not hasattr(t, "select_dtypes"):
            t = as_samples(t, "log_prob_gap", name).float()
            check_count(t, 1, "log_prob_gap", name)
            t = subsample(t, max_samples, seed)
        with seeded(seed), torch.no_grad():
            lp = model.log_prob(t)
        lp = torch.as_tensor(lp).double().reshape(-1)
        if not torch.isfinite(lp).all():
            raise ValueError(f"log_prob_gap: model.log_prob gave non-finite values on {name}")
        values[name] = lp.numpy()
    return {"train": float(values["train"].mean()), "holdout": float(values["holdout"].mean()),
            "gap": float(values["train"].mean() - values["holdout"].mean()),
            "kind": getattr(model, "log_prob_kind", None),
            "_train_values": values["train"], "_holdout_values": values["holdout"]}
