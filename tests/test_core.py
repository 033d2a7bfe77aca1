"""The foundation: save/load safety, seeds, devices, input checks at the public boundary."""

import os
import pickle
import struct

import numpy as np
import pytest
import torch

import probgen
from probgen.core.checks import as_tensor, check_labels
from probgen.core.random import resolve_device
from probgen.models import BayesianLinearRegression


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = x @ torch.tensor([1.5, -0.5]) + 0.2 + 0.1 * torch.randn(n, generator=g)
    return x, y


# ------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path):
    x, y = _data()
    m = BayesianLinearRegression(num_features=2, prior_scale=2.0)
    m.fit((x, y), steps=50, lr=0.05, progress=False, seed=0)
    path = probgen.save(m, tmp_path / "model.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind
    back = probgen.load(path)
    assert back.get_config() == m.get_config()
    for (k, v), (k2, v2) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert torch.equal(m.sample(5, seed=3, x=x[:4]), back.sample(5, seed=3, x=x[:4]))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


@pytest.mark.parametrize("how", ["pickle", "torch.save", "safetensors-with-pickled-config"])
def test_load_refuses_pickle_payload(tmp_path, how):
    flag = tmp_path / "pwned"
    _Payload.flag = flag
    path = tmp_path / "evil.safetensors"
    if how == "pickle":
        path.write_bytes(pickle.dumps(_Payload()))
    elif how == "torch.save":
        torch.save({"x": _Payload()}, path)
    else:
        # a well-formed safetensors header whose metadata smuggles a pickle instead of JSON
        m = BayesianLinearRegression(num_features=1)
        probgen.save(m, path)
        raw = path.read_bytes()
        size = struct.unpack("<Q", raw[:8])[0]
        header = raw[8:8 + size].decode()
        evil = pickle.dumps(_Payload()).hex()
        header = header.replace('"state":"{', f'"state":"{evil}{{', 1)
        header_b = header.encode()
        path.write_bytes(struct.pack("<Q", len(header_b)) + header_b + raw[8 + size:])
    with pytest.raises(ValueError, match="pickle|not a probgen|header|Expecting|JSON|metadata"):
        probgen.load(path)
    assert not flag.exists(), "loading executed code from the file"


def test_load_refuses_foreign_safetensors_and_unknown_family(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a probgen model file"):
        probgen.load(path)
    m = BayesianLinearRegression(num_features=1)
    good = probgen.save(m, tmp_path / "m.safetensors")
    raw = good.read_bytes().replace(b'"linear_regression"', b'"os.system________"')
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(raw)
    with pytest.raises(ValueError, match="unknown model family 'os.system.*linear_regression"):
        probgen.load(bad)
    with pytest.raises(FileNotFoundError):
        probgen.load(tmp_path / "missing.safetensors")


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    m = BayesianLinearRegression(num_features=1)
    path = probgen.save(m, tmp_path / "m.safetensors")
    before = path.read_bytes()
    m.guide_loc_bias.data.fill_(7.0) if hasattr(m.guide_loc_bias, "data") else None

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        probgen.save(m, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


# ------------------------------------------------------------------ seeds, devices
def test_same_seed_same_history_and_samples():
    x, y = _data()
    runs = []
    for _ in range(2):
        m = BayesianLinearRegression(num_features=2)
        r = m.fit((x, y), steps=40, batch_size=16, lr=0.05, progress=False, seed=11)
        runs.append((r.history["loss"].to_numpy(), m.sample(3, seed=5, x=x[:2])))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert torch.equal(runs[0][1], runs[1][1])
    other = BayesianLinearRegression(num_features=2).fit((x, y), steps=40, batch_size=16, lr=0.05, progress=False, seed=12)
    assert not np.array_equal(other.history["loss"].to_numpy(), runs[0][0])


def test_seeded_restores_global_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with probgen.seeded(0):
        torch.rand(10)
    assert torch.equal(torch.rand(3), expected)


def test_device_errors():
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            BayesianLinearRegression(num_features=1).fit((torch.zeros(3, 1), torch.zeros(3)), steps=1, device="cuda",
                                                       progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda():
    x, y = _data()
    m = BayesianLinearRegression(num_features=2)
    r = m.fit((x, y), steps=20, device="cuda", progress=False, seed=0)
    assert r.device.startswith("cuda") and m.device.type == "cuda"


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, match", [
    ((torch.tensor([[float("nan"), 1.0]] * 3), torch.zeros(3)), "NaN"),
    ((torch.zeros(3, 5), torch.zeros(3)), "shape"),
    ((np.array([["a", "b"]] * 3), np.zeros(3)), "numeric"),
    ((torch.zeros(3, 2), torch.zeros(4)), "rows"),
    (torch.zeros(3, 2), "pair"),
])
def test_bad_training_data_names_the_argument(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        BayesianLinearRegression(num_features=2).fit(bad, steps=1, progress=False)
    assert "data" in str(info.value)


def test_unknown_engine_option_and_model():
    m = BayesianLinearRegression(num_features=1)
    data = (torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(KeyError, match="svi"):
        m.fit(data, inference="variational")
    with pytest.raises(ValueError, match="unknown option 'stepz'"):
        m.fit(data, stepz=3)
    with pytest.raises(ValueError, match="steps"):
        m.fit(data, steps=-1)
    with pytest.raises(ValueError, match="either steps or epochs"):
        m.fit(data, steps=1, epochs=1)
    with pytest.raises(ValueError, match="patience"):
        m.fit(data, steps=1, patience=2)
    with pytest.raises(ValueError, match="closed-form"):
        m.fit(data, inference="exact")
    with pytest.raises(ValueError, match="cannot be fitted with 'adversarial'"):
        m.fit(data, inference="adversarial")
    with pytest.raises(ValueError, match="model: expected a probgen model"):
        probgen.fit(torch.nn.Linear(1, 1), data)
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        m.sample(0, x=torch.zeros(1, 1))
    with pytest.raises(ValueError, match="seed"):
        m.sample(1, seed=-4, x=torch.zeros(1, 1))


def test_checks_messages():
    with pytest.raises(ValueError, match=r"x: expected 2 dimensions"):
        as_tensor(torch.zeros(3), "x", ndim=2)
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 9\]"):
        check_labels([0, 10], 10, "y")


def test_registry_lists_families_and_rejects_unknown():
    names = probgen.models.available()
    assert "linear_regression" in names and names == sorted(names)
    with pytest.raises(KeyError, match="linear_regression"):
        probgen.models.get("no_such_family")


def test_progress_bar_is_quiet_off_a_terminal_and_shows_on_one(monkeypatch):
    import io

    from probgen.core.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        bar = progress_bar(range(3), desc="work", leave=True)
        assert bar.disable is (not shown)
        for _ in bar:
            pass
        assert ("work" in stream.getvalue()) is shown
    bar = progress_bar(range(3), enabled=False)
    assert bar.disable
