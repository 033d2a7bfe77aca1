"""The likelihood table: test NLL on binarized mnist5k for every family with a likelihood.

Each family's bench module trains its model on ``mnist5k_binary`` train (with
validation on val where it early-stops) and evaluates on the same fixed test split
(500 images): VAE (importance-weighted bound, k = 1,000: an upper bound on the NLL),
RBM (AIS estimate), PixelCNN and PixelRNN (exact). Published figures on the full
binarized-MNIST test set (10,000 images, models trained on 50-60k) are listed
beside them: the data differ, so compare orderings, not digits.
"""

from __future__ import annotations

import importlib

import pandas as pd

from .harness import Report

_SOURCES = [("vae", "VAE"), ("rbm", "RBM"), ("pixel_sampling", "PixelCNN / PixelRNN")]

PUBLISHED = [
    ("NADE (Uria et al. 2016)", 88.33), ("MADE (Germain et al. 2015)", 88.04),
    ("VAE, 1 stochastic layer, k=5000 (Burda et al. 2016)", 86.76),
    ("RBM, 500 hidden, CD-25, AIS (Salakhutdinov & Murray 2008)", 86.34),
    ("VAE, 2 stochastic layers (Burda et al. 2016)", 85.33), ("DBN (Salakhutdinov & Murray 2008)", 84.55),
    ("IWAE, 2 layers, k=50 (Burda et al. 2016)", 82.90), ("PixelCNN (van den Oord et al. 2016)", 81.30),
    ("PixelRNN, Diagonal BiLSTM (van den Oord et al. 2016)", 79.20),
]


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("likelihood", "test NLL on binarized mnist5k (nats, lower is better)")
    rows = []
    for module, label in _SOURCES:
        try:
            bench = importlib.import_module(f".{module}", __package__)
        except ImportError as exc:  # a family not present in this version
            report.note(f"{label}: not run ({exc})")
            continue
        kwargs = {"device": device} if module != "rbm" else {}
        rows += [{**row, "source": "probgen (this run)"} for row in bench.likelihood_rows(quick=quick, **kwargs)]
    rows += [{"model": name, "nll_nats": nll, "k_or_method": "", "protocol": "full binarized MNIST test set",
              "source": "published"} for name, nll in PUBLISHED]
    report.table("test NLL", pd.DataFrame(rows).set_index("model"))
    report.note("probgen rows: 4,000 training images and the fixed 500-image test split of mnist5k_binary; "
                "published rows: 50-60k training images and the 10,000-image MNIST test set")
    return report
