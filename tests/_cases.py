"""Helpers shared by the robustness tests: each family's contract case, fitted once per process."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np
import pandas as pd
import torch

import probgen


@functools.lru_cache(maxsize=None)
def fitted(family: str):
    """The family's contract case, fitted once (shared by every test in the process)."""
    case = probgen.models.get(family)._contract_case()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case.model.fit(case.data, progress=False, seed=0, **case.fit_options)
    return case


def probe(case):
    """The data the contract case queries ``log_prob`` / ``score`` with."""
    return case.log_prob_data if case.log_prob_data is not None else case.data


def take(data, k: int):
    """The first ``k`` examples of contract-case data of any kind."""
    if isinstance(data, (torch.Tensor, np.ndarray, list, str)):
        return data[:k]
    if isinstance(data, (pd.DataFrame, pd.Series)):
        return data.iloc[:k]
    if isinstance(data, tuple):
        return tuple(take(p, k) for p in data)
    if dataclasses.is_dataclass(data):
        rows = len(data)
        return dataclasses.replace(data, **{f.name: getattr(data, f.name)[:k] for f in dataclasses.fields(data)
                                            if isinstance(getattr(data, f.name), torch.Tensor)
                                            and getattr(data, f.name).dim() and len(getattr(data, f.name)) == rows})
    raise TypeError(f"cannot take rows of {type(data).__name__}")
