"""PixelCNN / PixelRNN: causal masks, exact normalisation, cached == naive sampling, errors."""

import itertools
import math

import pyro.poutine as poutine
import pytest
import torch

import probgen
from probgen.models.pixel import PixelCNN, PixelRNN
from probgen.nn.masked import MaskedConv2d, raster_mask

ARCHS = {
    "cnn": lambda shape, **kw: PixelCNN(shape, channels=6, layers=3, **kw),
    "row": lambda shape, **kw: PixelRNN(shape, layer="row", hidden=6, layers=2, **kw),
    "diagonal": lambda shape, **kw: PixelRNN(shape, layer="diagonal", hidden=6, layers=2, **kw),
}


def _jacobian(model, h=5, w=5):
    """|d output(i, j) / d x(k, l)| as an (HW, HW) matrix in raster order."""
    x = (torch.randint(0, 256, (1, 1, h, w)) / 255).requires_grad_(True)
    out = model(x)
    rows = []
    for p in range(h * w):
        i, j = divmod(p, w)
        (g,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
        rows.append(g.reshape(-1).abs())
    return torch.stack(rows)


@pytest.mark.parametrize("arch", ARCHS)
def test_output_depends_only_on_earlier_pixels(arch):
    torch.manual_seed(0)
    model = ARCHS[arch]((1, 5, 5), output="categorical")
    jac = _jacobian(model)
    assert torch.triu(jac).max() == 0, "output i must not depend on inputs >= i"
    earlier = jac[-1, :-1] > 0
    if arch == "row":  # triangular context: with a 5x5 first kernel it still reaches most pixels
        assert earlier.sum() >= 12
    else:  # gated PixelCNN has no blind spot; the Diagonal BiLSTM sees every earlier pixel
        assert earlier.all(), f"blind spot at {(~earlier).nonzero().flatten().tolist()}"


def test_raster_masks():
    assert raster_mask(3, 3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert raster_mask(3, 3, "vertical_A").tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
    assert raster_mask(3, 3, "vertical_B").tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0]]
    conv = MaskedConv2d(1, 1, 3, "A")
    x = torch.zeros(1, 1, 3, 3, requires_grad=True)
    conv(x)[0, 0, 1, 1].backward()
    assert x.grad[0, 0].ne(0).tolist() == [[True, True, True], [True, False, False], [False, False, False]]
    with pytest.raises(ValueError, match="kind"):
        MaskedConv2d(1, 1, 3, "C")
    with pytest.raises(ValueError, match="kernel_size"):
        MaskedConv2d(1, 1, 4, "A")


@pytest.mark.parametrize("arch", ARCHS)
def test_binary_3x3_probabilities_sum_to_one(arch):
    torch.manual_seed(1)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9))).reshape(512, 1, 3, 3)
    model = ARCHS[arch]((1, 3, 3))
    total = torch.logsumexp(model.log_prob(images).double(), 0).exp()
    assert abs(float(total) - 1) < 1e-5
    cond = ARCHS[arch]((1, 3, 3), num_classes=3)
    for label in (0, 2):
        total = torch.logsumexp(cond.log_prob(images, y=torch.full((512,), label)).double(), 0).exp()
        assert abs(float(total) - 1) < 1e-5
    assert not torch.allclose(cond.log_prob(images, y=torch.zeros(512, dtype=torch.long)),
                              cond.log_prob(images, y=torch.full((512,), 2)))


@pytest.mark.parametrize("output", ["categorical", "logistic"])
def test_grayscale_1x2_probabilities_sum_to_one(output):
    torch.manual_seed(2)
    grid = torch.tensor(list(itertools.product(range(256), repeat=2)), dtype=torch.float32).reshape(-1, 1, 1, 2) / 255
    model = PixelCNN((1, 1, 2), output=output, channels=4, layers=2)
    assert abs(float(torch.logsumexp(model.log_prob(grid).double(), 0).exp()) - 1) < 1e-4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("output", ["bernoulli", "logistic"])
def test_cached_sampling_equals_naive(arch, output):
    torch.manual_seed(3)
    model = ARCHS[arch]((1, 6, 7), output=output, num_classes=4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    cached = model.sample(6, seed=11, y=y)
    naive = model.sample(6, seed=11, y=y, cached=False)
    assert cached.shape == (6, 1, 6, 7)
    assert torch.equal(cached, naive)
    assert not torch.equal(cached, model.sample(6, seed=12, y=y))
    # completion of the bottom half: observed pixels kept, same answer both ways
    mask = torch.zeros(6, 7, dtype=torch.bool)
    mask[:3] = True
    done = model.complete(cached, mask, y=y, seed=5)
    assert torch.equal(done[:, :, :3], cached[:, :, :3])
    assert torch.equal(done, model.complete(cached, mask, y=y, seed=5, cached=False))


def test_pyro_model_log_prob_is_exact_likelihood():
    torch.manual_seed(4)
    model = PixelCNN((1, 4, 4), channels=4, layers=2)
    x = (torch.rand(5, 1, 4, 4) > 0.5).float()
    trace = poutine.trace(model.model).get_trace(x)
    trace.compute_log_prob()
    assert torch.allclose(trace.nodes["image"]["log_prob"], model.log_prob(x), atol=1e-5)
    draw = poutine.trace(model.model).get_trace(n=3).nodes["image"]["value"]
    assert draw.shape == (3, 1, 4, 4) and set(draw.unique().tolist()) <= {0.0, 1.0}
    bpd = model.bits_per_dim(x)
    assert torch.allclose(bpd, -model.log_prob(x) / (16 * math.log(2)))
    assert torch.allclose(model.score(x), -model.log_prob(x))


def test_fit_beats_independent_pixels_and_round_trips(tmp_path):
    x = (probgen.datasets.load("digits").x > 0.5).float()
    train, test = x[:1200], x[1200:1500]
    torch.manual_seed(0)  # the network's initial weights (built by the constructor, before fit's seed)
    model = PixelCNN((1, 8, 8), channels=8, layers=2, first_kernel=5)
    result = model.fit(train, epochs=8, batch_size=50, lr=1e-2, progress=False, seed=0, validation=test)
    assert result.engine == "mle" and "val_loss" in result.history
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    independent = float((test * p.log() + (1 - test) * (1 - p).log()).sum((1, 2, 3)).mean())
    assert float(model.log_prob(test).mean()) > independent + 1  # context beats the best factorised model
    path = tmp_path / "pixel"
    probgen.save(model, path)
    loaded = probgen.load(path)
    assert torch.equal(loaded.sample(3, seed=0), model.sample(3, seed=0))
    assert torch.allclose(loaded.log_prob(test[:4]), model.log_prob(test[:4]))


def test_bad_input_names_the_problem():
    model = PixelCNN((1, 4, 4), channels=4, layers=2)
    with pytest.raises(ValueError, match=r"x: expected images of shape \(n, 1, 4, 4\)"):
        model.log_prob(torch.zeros(2, 1, 5, 5))
    with pytest.raises(ValueError, match="binary"):
        model.log_prob(torch.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob(torch.full((2, 4, 4), float("nan")))
    gray = PixelCNN((1, 4, 4), output="categorical", channels=4, layers=2)
    with pytest.raises(ValueError, match="k/255"):
        gray.log_prob(torch.full((2, 1, 4, 4), 0.1234))
    with pytest.raises(ValueError, match="k/255"):
        gray.log_prob(torch.full((2, 1, 4, 4), 2.0))
    with pytest.raises(ValueError, match="output"):
        PixelCNN((1, 4, 4), output="gaussian")
    with pytest.raises(ValueError, match="layer"):
        PixelRNN((1, 4, 4), layer="column")
    with pytest.raises(ValueError, match="data_shape"):
        PixelCNN((4, 4))
    with pytest.raises(ValueError, match="first_kernel"):
        PixelCNN((1, 4, 4), first_kernel=4)
    cond = PixelRNN((1, 4, 4), hidden=4, layers=1, num_classes=3)
    with pytest.raises(ValueError, match="needs labels"):
        cond.sample(2)
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 2\]"):
        cond.sample(2, y=[0, 5])
    with pytest.raises(ValueError, match="not class-conditional"):
        model.sample(2, y=1)
    with pytest.raises(ValueError, match="mask"):
        model.complete(torch.zeros(2, 1, 4, 4), torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="fit: unknown option"):
        model.fit(torch.zeros(4, 1, 4, 4), stepz=3)


def test_bench_quick():
    from probgen.bench.pixel_sampling import run

    report = run(quick=True)
    frame = report.frame()
    assert len(frame) == 9
    same = frame[frame.metric == "cached == naive samples"]
    assert (same.probgen == 1.0).all()
    times = frame[frame.metric == "sampling time"]
    assert (times.probgen > 0).all() and (times.baseline > 0).all()


def test_likelihood_rows_quick():
    from probgen.bench.pixel_sampling import likelihood_rows

    rows = likelihood_rows(quick=True)
    assert [r["model"] for r in rows] == ["PixelCNN", "PixelRNN (Row LSTM)", "PixelRNN (Diagonal BiLSTM)"]
    for r in rows:
        assert set(r) == {"model", "nll_nats", "k_or_method", "protocol"}
        # a few steps cannot beat the data much, but the exact NLL lies below 784 ln 2 = 543 nats (coin flips)
        assert 0 < r["nll_nats"] < 784 * math.log(2)


def _visible(model, h, w, n=16):
    """(h, w, h, w) booleans: does output (i, j) depend on input pixel (k, l)? The union over ``n``
    random images of the non-zero gradients (one image could hide a link behind a dead ReLU)."""
    x = torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_(True)
    out = model.double()(x)[:, 0]
    seen = torch.zeros(h, w, h, w, dtype=torch.bool)
    for i, j in itertools.product(range(h), range(w)):
        (g,) = torch.autograd.grad(out[:, i, j].sum(), x, retain_graph=True)
        seen[i, j] = g.abs().sum(0)[0] > 0
    return seen


@pytest.mark.parametrize("first_kernel", [3, 7])
def test_diagonal_bilstm_sees_exactly_the_previous_pixels(first_kernel):
    """Dependency scan of a 4x6 image: output (i, j) depends on every pixel before it in raster order and
    on none after, at any depth; the legacy layer (probgen 0.1) misses the end of the row above."""
    h, w = 4, 6
    previous = torch.tril(torch.ones(h * w, h * w, dtype=torch.bool), -1).reshape(h, w, h, w)
    for layers in (1, 2):
        torch.manual_seed(0)
        seen = _visible(PixelRNN((1, h, w), layer="diagonal", hidden=4, layers=layers, first_kernel=first_kernel), h, w)
        assert torch.equal(seen, previous), f"missing {(previous & ~seen).nonzero().tolist()[:5]}, extra {(seen & ~previous).nonzero().tolist()[:5]}"
    torch.manual_seed(0)
    legacy = _visible(PixelRNN((1, h, w), layer="diagonal", hidden=4, layers=1, first_kernel=first_kernel,
                               context="legacy"), h, w)
    assert not (legacy & ~previous).any()
    blind = (previous & ~legacy).flatten(2).any(-1)
    # the blind outputs: rows 1.. , columns j with j + first_kernel // 2 < w - 1 (the window misses (i-1, w-1))
    expected = torch.zeros(h, w, dtype=torch.bool)
    expected[1:, : max(0, w - 1 - first_kernel // 2)] = True
    assert torch.equal(blind, expected) and int(blind.sum()) == {3: 12, 7: 6}[first_kernel]


def test_diagonal_cached_sampling_and_legacy_files(tmp_path):
    """Cached sampling of the full-context layer equals the naive sampler; a file saved before ``context``
    existed (no such key in its config) loads as the legacy layer with identical outputs."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = PixelRNN((1, 4, 5), layer="diagonal", hidden=6, layers=2, first_kernel=3)
    assert torch.equal(model.sample(3, seed=2), model.sample(3, seed=2, cached=False))
    torch.manual_seed(0)
    legacy = PixelRNN((1, 4, 5), layer="diagonal", hidden=6, layers=2, first_kernel=3, context="legacy")
    path = tmp_path / "old.probgen"
    probgen.save(legacy, path)
    with safe_open(str(path), "pt") as f:  # rewrite the header as probgen 0.1 wrote it
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    del config["context"]
    meta.pop("checksum", None)  # probgen 0.1 wrote none, as format version "1"
    save_file(tensors, str(path), metadata={**meta, "format_version": "1", "config": json.dumps(config)})
    loaded = probgen.load(path)
    assert loaded.context == "legacy"
    x = (torch.rand(3, 1, 4, 5) > 0.5).float()
    assert torch.allclose(loaded.log_prob(x), legacy.log_prob(x))
