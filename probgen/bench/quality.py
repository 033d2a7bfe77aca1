"""Quality report time on 10,000 x 64 samples against the reference code; augmentation on digits.

Baselines:
- precision / recall / density / coverage: the real ``prdc`` package (Naeem et al.'s
  ``compute_prdc``, bench extra), called as its README shows;
- α-precision / β-recall / authenticity: a RE-IMPLEMENTATION of synthcity's code with sklearn
  ``NearestNeighbors``: synthcity 0.2.12 requires torch<2.3 and numpy<2, which would replace
  the pinned torch 2.13 CPU build;
- Fréchet distance: a RE-IMPLEMENTATION of pytorch-fid's ``calculate_frechet_distance``
  (NumPy + ``scipy.linalg.sqrtm``): pytorch-fid imports torchvision, whose PyPI build fails
  to import beside the pinned CPU torch ("operator torchvision::nms does not exist"), and
  the torchvision builds that do import need another torch;
- MMD permutation test: a NumPy loop recomputing the statistic per permutation;
- memorization (DCR, NNDR, membership inference): sklearn ``NearestNeighbors``;
- detection AUC and marginals: the same sklearn / scipy calls probgen makes.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import torch

from .harness import Report


# where each baseline row comes from
SOURCES = {"fidelity": "prdc 0.2 (the package)", "alpha_beta": "re-implementation of synthcity",
           "frechet": "re-implementation of pytorch-fid", "mmd": "NumPy permutation loop",
           "detection": "scikit-learn (same calls)", "marginals": "scipy (same calls)",
           "memorization": "scikit-learn NearestNeighbors"}


def _prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """The real ``prdc`` package (it prints the sample counts: silenced)."""
    import contextlib
    import io

    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        values = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return {key: float(v) for key, v in values.items()}


def _alpha_beta_reference(real: np.ndarray, fake: np.ndarray, steps: int = 30) -> dict:
    from sklearn.neighbors import NearestNeighbors

    alphas = np.linspace(0, 1, steps)
    center = real.mean(0)
    radii = np.quantile(np.sqrt(((real - center) ** 2).sum(1)), alphas)
    synth_center = fake.mean(0)
    synth_to_center = np.sqrt(((fake - center) ** 2).sum(1))
    real_to_real = NearestNeighbors(n_neighbors=2).fit(real).kneighbors(real)[0][:, 1]
    real_to_synth, args = NearestNeighbors(n_neighbors=1).fit(fake).kneighbors(real)
    closest_d = np.sqrt(((fake[args[:, 0]] - synth_center) ** 2).sum(1))
    closest_radii = np.quantile(closest_d, alphas)
    ap = [np.mean(synth_to_center <= r) for r in radii]
    br = [np.mean((real_to_synth[:, 0] <= real_to_real) & (closest_d <= r)) for r in closest_radii]
    d_fr, i_fr = NearestNeighbors(n_neighbors=1).fit(real).kneighbors(fake)
    auth = np.mean(d_fr[:, 0] > real_to_real[i_fr[:, 0]])
    return {"alpha_precision": 1 - np.abs(np.array(ap) - alphas).sum() / alphas.sum(),
            "beta_recall": 1 - np.abs(np.array(br) - alphas).sum() / alphas.sum(), "authenticity": auth}


def _frechet_reference(real: np.ndarray, fake: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _mmd_reference(x: np.ndarray, y: np.ndarray, permutations: int, seed: int) -> dict:
    from scipy.spatial.distance import cdist

    z = np.vstack([x, y])
    d2 = cdist(z, z, "sqeuclidean")
    bw = np.sqrt(np.median(d2[np.triu_indices(len(z), 1)]))
    k = np.exp(-d2 / (2 * bw**2))
    n = len(x)

    def stat(idx):
        a, b = idx[:n], idx[n:]
        kxx, kyy, kxy = k[np.ix_(a, a)], k[np.ix_(b, b)], k[np.ix_(a, b)]
        m = len(b)
        return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                - 2 * kxy.mean())

    rng = np.random.default_rng(seed)
    obs = stat(np.arange(len(z)))
    null = [stat(rng.permutation(len(z))) for _ in range(permutations)]
    return {"mmd2": obs, "p_value": (1 + np.sum(np.array(null) >= obs)) / (1 + permutations)}


def _memorization_reference(fake: np.ndarray, train: np.ndarray, holdout: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    d_tr = NearestNeighbors(n_neighbors=2).fit(train).kneighbors(fake)[0]
    d_ho = NearestNeighbors(n_neighbors=1).fit(holdout).kneighbors(fake)[0][:, 0]
    nn_fake = NearestNeighbors(n_neighbors=1).fit(fake)
    m, nm = nn_fake.kneighbors(train)[0][:, 0], nn_fake.kneighbors(holdout)[0][:, 0]
    ref = NearestNeighbors(n_neighbors=2).fit(train).kneighbors(holdout[:2000])[0]
    return {"closer_to_train": float((d_tr[:, 0] < d_ho).mean()), "exact_copies": float((d_tr[:, 0] <= 1e-6).mean()),
            "nndr_median": float(np.median(d_tr[:, 0] / d_tr[:, 1])),
            "nndr_holdout": float(np.median(ref[:, 0] / ref[:, 1])),
            "mia_auc": float(roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(nm))], -np.r_[m, nm]))}


_GROUPS = {"fidelity": ("precision", "recall", "density", "coverage"),
           "alpha_beta": ("alpha_precision", "beta_recall", "authenticity"), "frechet": ("frechet",),
           "mmd": ("mmd2", "p_value"), "detection": ("detection_auc",),
           "marginals": ("marginal_ks_max", "correlation_diff_max"),
           "memorization": ("closer_to_train", "exact_copies", "nndr_median", "nndr_holdout", "mia_auc")}


def _standardized(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r, f = real.double(), fake.double()
    mu, sd = r.mean(0), r.std(0)
    return (r - mu) / sd, (f - mu) / sd


def _baseline_report(real: np.ndarray, fake: np.ndarray, holdout: np.ndarray, k: int) -> tuple[dict, dict]:
    """Every metric of the probgen report through the reference code; returns (values, seconds)."""
    from ..metrics.distances import correlation_difference, detection_auc, marginal_distances

    mu, sd = real.mean(0), real.std(0, ddof=1)
    r, f, h = (real - mu) / sd, (fake - mu) / sd, (holdout - mu) / sd
    times, values = {}, {}
    for name, fn in [("fidelity", lambda: _prdc_reference(r, f, k)),
                     ("alpha_beta", lambda: _alpha_beta_reference(r, f)),
                     ("frechet", lambda: {"frechet": _frechet_reference(r, f)}),
                     ("mmd", lambda: _mmd_reference(r[:2000], f[:2000], 200, 0)),
                     ("detection", lambda: {"detection_auc": detection_auc(r, f, features="raw")["auc"]}),
                     ("marginals", lambda: {"marginal_ks_max": float(marginal_distances(real, fake)["ks"].max()),
                                            "correlation_diff_max": correlation_difference(real, fake)["max_abs"]}),
                     ("memorization", lambda: _memorization_reference(f, r, h))]:
        start = time.perf_counter()
        values.update(fn())
        times[name] = time.perf_counter() - start
    return values, times


def _augmentation(report: Report, quick: bool) -> None:
    from ..datasets import load
    from ..models import VAE
    from ..tasks.augment import augmentation_gain

    train, test = load("digits", split="train"), load("digits", split="test")
    sizes, repeats, steps = ((30,), 1, 20) if quick else ((50, 100, 200), 2, 200)

    def cvae(xs, ys):
        model = VAE(data_shape=(1, 8, 8), latent_dim=8, hidden=(128,), likelihood="gaussian", num_classes=10)
        model.fit((xs, ys), steps=steps, lr=3e-3, progress=False, seed=0)
        return lambda n, c, s: model.sample(n, seed=s, y=c).clamp(0, 1)

    def gauss(xs, ys):  # per-class diagonal Gaussian (sklearn), the simplest conditional generator
        from sklearn.mixture import GaussianMixture

        flat = xs.reshape(len(xs), -1).numpy()
        fits = {c: GaussianMixture(1, covariance_type="diag", reg_covar=1e-2, random_state=0).fit(flat[ys.numpy() == c])
                for c in ys.unique().tolist() if (ys == c).sum() >= 2}

        def draw(n, c, s):
            if c not in fits:
                return xs[ys == c][torch.zeros(n, dtype=torch.long)]
            fits[c].random_state = s
            return torch.from_numpy(fits[c].sample(n)[0]).float().clamp(0, 1).reshape(n, 1, 8, 8)
        return draw

    tables = []
    generators = [("conditional VAE (probgen)", cvae), ("per-class Gaussian (sklearn)", gauss)]
    for name, gen in generators[1:] if quick else generators:
        start = time.perf_counter()
        t = augmentation_gain(gen, train, test, sizes=sizes, repeats=repeats, n_synthetic=1.0, progress=False)
        t.insert(0, "generator", name)
        tables.append(t)
        report.note(f"augmentation with {name}: {time.perf_counter() - start:.1f} s")
    frame = pd.concat(tables).set_index(["generator", "size"])
    report.table("augmentation on digits (logistic regression, test accuracy; +1x generated examples)",
                 frame[["real", "augmented", "synthetic_only", "gain", "gain_std"]])


def run(quick: bool = False, device: str = "cpu") -> Report:
    from ..metrics.fidelity import precision_recall
    from ..metrics.report import evaluate

    report = Report("quality", "full quality report on n x 64 samples vs prdc and reference implementations")
    n, d, k = (600, 64, 5) if quick else (10_000, 64, 5)
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(d, d, generator=g) / d**0.5
    real = torch.randn(n, d, generator=g) @ mix
    holdout = torch.randn(n, d, generator=g) @ mix
    fake = (torch.randn(n, d, generator=g) * 1.1 + 0.05) @ mix
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start, cpu = time.perf_counter(), time.process_time()
    rep = evaluate(fake, real, holdout, progress=False, k=k)
    t_probgen, cpu_probgen = time.perf_counter() - start, time.process_time() - cpu
    cpu = time.process_time()
    base_values, base_times = _baseline_report(real.double().numpy(), fake.double().numpy(), holdout.double().numpy(), k)
    t_base, cpu_base = sum(base_times.values()), time.process_time() - cpu
    report.add(f"full report, {n} x {d} (+ {n} holdout)", "time", t_probgen, t_base,
               baseline_name="prdc (package) + re-implementations of synthcity, pytorch-fid; sklearn NN", unit="s",
               goal="< 60 s on 2 cores")
    for group, seconds in base_times.items():
        report.add(f"  {group}", "time", rep.timings.get(group, float("nan")), seconds,
                   baseline_name=SOURCES[group], unit="s")
    compare = []
    for metric, value in base_values.items():
        key = {"mia_auc": "mia_auc_distance"}.get(metric, metric)
        if key in rep.table.index:
            group = next(g for g, names in _GROUPS.items() if metric in names)
            compare.append({"metric": key, "probgen": rep[key], "reference": float(value),
                            "abs_diff": abs(rep[key] - float(value)), "reference_source": SOURCES[group]})
    report.table("same metrics, probgen vs reference values", pd.DataFrame(compare).set_index("metric"))
    report.add(f"full report, {n} x {d} (+ {n} holdout)", "process CPU time", cpu_probgen, cpu_base,
               baseline_name="prdc + re-implementations", unit="s")
    r64, f64 = _standardized(real, fake)
    cpu = time.process_time()
    ours = precision_recall(r64, f64, k=k, features="raw", max_samples=None)
    cpu_ours = time.process_time() - cpu
    cpu = time.process_time()
    theirs = _prdc_reference(r64.numpy(), f64.numpy(), k)
    cpu_theirs = time.process_time() - cpu
    report.add("precision/recall/density/coverage alone", "process CPU time", cpu_ours, cpu_theirs,
               baseline_name="prdc 0.2 compute_prdc", unit="s")
    worst = max(abs(ours[m] - theirs[m]) for m in theirs)
    # repeated records (every discrete table): a table compared with itself lies inside its own balls
    table = torch.randint(0, 3, (2000, 4), generator=torch.Generator().manual_seed(1)).double()
    ours_t = precision_recall(table, table.clone(), k=k, features="raw")
    theirs_t = _prdc_reference(table.numpy(), table.numpy().copy(), k)
    report.note("a discrete 2,000 x 4 table (3 levels per column) against itself, where every rule gives 1.0: "
                f"coverage probgen {ours_t['coverage']:.4f} vs prdc {theirs_t['coverage']:.4f}, precision "
                f"{ours_t['precision']:.4f} vs {theirs_t['precision']:.4f} (prdc counts a point inside a ball only when "
                "its distance is strictly below the radius: a record with k or more copies has a radius-0 ball that "
                "holds nothing)")
    report.note("precision / recall / density / coverage, probgen vs prdc 0.2 on the same standardized rows: "
                + ", ".join(f"{m} {ours[m]:.6f} vs {theirs[m]:.6f}" for m in theirs)
                + f" (largest difference {worst:.2g})")
    report.note(f"1-minute load average when the report started: {load_before:.1f} on {os.cpu_count()} cores "
                "(wall times above that are inflated by other processes on the machine)")
    report.note(f"probgen feature embedding and standardization: {rep.timings['features']:.2f} s (in the total)")
    report.note("ratio = probgen time / reference time (lower is better); detection and marginals call the same "
                "sklearn/scipy code on both sides; MMD uses 2,000 rows per side and 200 permutations on both sides")
    _augmentation(report, quick)
    return report
