"""The NHEFS smoking-cessation study prepared for a discrete Bayesian network."""

from __future__ import annotations

__all__ = ["nhefs_frame"]

import numpy as np
import pandas as pd

from ._catalog import load


def nhefs_frame() -> tuple[pd.DataFrame, dict[str, float]]:
    """NHEFS (``causaldata/nhefs``) discretised for a discrete network, and the outcome bins' values.

    Documented discretisation: the 1,566 people with a 1982 weight; ``qsmk`` (quit smoking
    1971-82), ``sex``, ``exercise`` as coded; ``age`` <=35 / 36-50 / >50;
    ``smokeintensity`` (cigarettes a day) <=10 / 11-20 / >20; ``smokeyrs`` <=15 / 16-30 / >30;
    ``wt71`` (kg) <=60 / 60-80 / >80; ``weight_gain`` (``wt82_71``, kg) in six bins cut at
    -5, 0, 3, 6, 10, each bin worth the mean weight gain of the people in it (returned
    as the second value, for expectations).
    """
    raw = load("nhefs")
    raw = raw[raw["wt82_71"].notna()]

    def cut(col, edges, labels):
        return pd.cut(raw[col], [-np.inf, *edges, np.inf], labels=labels).astype(str)

    frame = pd.DataFrame({
        "qsmk": raw["qsmk"].astype(int).astype(str),
        "sex": raw["sex"].astype(int).astype(str),
        "age": cut("age", [35, 50], ["<=35", "36-50", ">50"]),
        "smokeintensity": cut("smokeintensity", [10, 20], ["<=10", "11-20", ">20"]),
        "smokeyrs": cut("smokeyrs", [15, 30], ["<=15", "16-30", ">30"]),
        "exercise": raw["exercise"].astype(int).astype(str),
        "wt71": cut("wt71", [60, 80], ["<=60", "60-80", ">80"]),
        "weight_gain": cut("wt82_71", [-5, 0, 3, 6, 10], ["<-5", "-5..0", "0..3", "3..6", "6..10", ">10"]),
    }).reset_index(drop=True)
    values = raw["wt82_71"].groupby(frame["weight_gain"].to_numpy()).mean().to_dict()
    return frame, {str(k): float(v) for k, v in values.items()}
