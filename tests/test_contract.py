"""Every registered family honours the one interface (DESIGN.md, "One interface").

For each family's tiny contract case: it fits, samples the asked-for number of
examples reproducibly from a seed (a second copy built from another random state and fitted with
the same seed gives the same samples), declares its ``log_prob_kind`` (or raises the
documented error naming what to use instead), scores, and survives
``probgen.save`` -> ``probgen.load`` with identical samples.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import probgen
from probgen.core.base import ContractCase, Model, NoLikelihoodError

FAMILIES = probgen.models.available()


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (pd.DataFrame, pd.Series)):
        return a.equals(b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _length(samples) -> int:
    if isinstance(samples, dict):
        return len(next(iter(samples.values())))
    return len(samples)


def _per_row(values, n_rows):
    values = torch.as_tensor(np.asarray(values) if isinstance(values, (pd.Series, np.ndarray)) else values)
    assert values.dim() == 1 and len(values) == n_rows, f"expected one value per example, got shape {tuple(values.shape)}"
    return values


def test_registry_is_not_empty():
    assert "linear_regression" in FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_family_contract(family, tmp_path):
    cls = probgen.models.get(family)
    assert issubclass(cls, Model) and cls.family == family
    assert cls.log_prob_kind in ("exact", "lower_bound", "estimate", None)
    case = cls._contract_case()
    assert isinstance(case, ContractCase)
    model = case.model
    assert cls.default_inference in probgen.infer.available(model)

    result = model.fit(case.data, progress=False, seed=0, **case.fit_options)
    assert isinstance(result, probgen.FitResult)
    assert result.engine == case.fit_options.get("inference", cls.default_inference)

    first = model.sample(4, seed=0, **case.sample_kwargs)
    again = model.sample(4, seed=0, **case.sample_kwargs)
    assert _length(first) == 4
    assert _same(first, again), "the same seed must give the same samples"
    torch.rand(17)  # another global random state: the fit's seed alone must fix the result
    twin = cls._contract_case().model
    twin.fit(case.data, progress=False, seed=0, **case.fit_options)
    assert _same(twin.sample(4, seed=0, **case.sample_kwargs), first), "fit(seed=) must fix the initial weights too"

    probe = case.log_prob_data if case.log_prob_data is not None else case.data
    n_probe = _length(probe[0] if isinstance(probe, tuple) else probe)
    if cls.log_prob_kind is None:
        with pytest.raises(NoLikelihoodError, match="instead"):
            model.log_prob(probe)
    else:
        lp = _per_row(model.log_prob(probe), n_probe)
        assert torch.isfinite(lp).all()
    score = _per_row(model.score(probe), n_probe)
    assert torch.isfinite(score).all()

    path = probgen.save(model, tmp_path / f"{family}.safetensors")
    back = probgen.load(path)
    assert type(back) is cls
    assert _same(back.sample(4, seed=0, **case.sample_kwargs), first), "save -> load must give identical samples"
    if cls.log_prob_kind == "exact":
        assert torch.allclose(_per_row(back.log_prob(probe), n_probe), lp, atol=1e-5)
    assert back.device.type == "cpu" and math.isfinite(float(score.sum()))
