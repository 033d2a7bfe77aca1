"""Pictures people would rather look at than numbers: curves, sample grids, densities, networks.

Every function draws on a matplotlib ``Axes`` (a new figure when ``ax`` is None)
and returns it.
"""

from __future__ import annotations

__all__ = ["training_curves", "sample_grid", "density_2d", "scatter_2d", "draw_network", "save_figure"]

import os
from typing import Any, Callable, Sequence

import numpy as np
import torch


def _axes(ax=None, figsize=(5, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def training_curves(history, ax=None, columns: Sequence[str] | None = None, title: str | None = None):
    """Loss (and validation loss) against step from a ``FitResult.history``."""
    ax = _axes(ax)
    x = history["step"] if "step" in history else np.arange(len(history))
    columns = columns or [c for c in history.columns if c.endswith("loss")]
    for column in columns:
        series = history[column]
        mask = series.notna()
        ax.plot(np.asarray(x)[mask], series[mask], label=column, marker="o" if mask.sum() < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    if columns:
        ax.legend()
    return ax


def sample_grid(images: Any, nrow: int = 8, ax=None, title: str | None = None, cmap: str = "gray"):
    """Images ``(n, 1, H, W)`` or ``(n, H, W)`` tiled in a grid."""
    x = torch.as_tensor(images).detach().float().cpu()
    if x.dim() == 4:
        x = x[:, 0]
    n, h, w = x.shape
    ncol = min(nrow, n)
    rows = int(np.ceil(n / ncol))
    # mid-gray separators, so that binary images (black and white) stay apart from each other
    low, high = (float(x.min()), float(x.max())) if n else (0.0, 1.0)
    canvas = np.full((rows * (h + 1) + 1, ncol * (w + 1) + 1), (low + high) / 2)
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = x[i].numpy()
    ax = _axes(ax, figsize=(ncol * 0.6 + 1, rows * 0.6 + 1))
    ax.imshow(canvas, cmap=cmap, interpolation="nearest", vmin=low, vmax=high)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def density_2d(log_prob: Callable[[torch.Tensor], torch.Tensor], bounds=(-3, 3, -3, 3), resolution: int = 200,
               ax=None, title: str | None = None):
    """The density ``exp(log_prob)`` of a 2-D model on a grid."""
    x0, x1, y0, y1 = bounds
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    grid = torch.tensor(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2), dtype=torch.float32)
    with torch.no_grad():
        density = log_prob(grid).exp().reshape(resolution, resolution).cpu().numpy()
    ax = _axes(ax)
    ax.imshow(density, origin="lower", extent=bounds, cmap="viridis", aspect="auto")
    if title:
        ax.set_title(title)
    return ax


def scatter_2d(points: Any, ax=None, title: str | None = None, s: float = 2, **kwargs):
    """A scatter plot of 2-D points."""
    p = torch.as_tensor(points).detach().cpu().numpy()
    ax = _axes(ax)
    ax.scatter(p[:, 0], p[:, 1], s=s, **kwargs)
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    return ax


def draw_network(graph, node_color: Any = None, ax=None, title: str | None = None, layout: str = "spring",
                 cmap: str = "viridis", with_labels: bool = False, seed: int = 0, **kwargs):
    """A networkx graph (or a pgmpy DAG), nodes coloured by ``node_color``."""
    import networkx as nx

    if isinstance(graph, nx.Graph):
        g = graph
    else:  # nodes first, so that a list of node colours follows graph.nodes()
        g = nx.DiGraph()
        g.add_nodes_from(graph.nodes())
        g.add_edges_from(graph.edges())
    pos = nx.spring_layout(g, seed=seed) if layout == "spring" else getattr(nx, f"{layout}_layout")(g)
    ax = _axes(ax, figsize=(6, 5))
    nx.draw_networkx(g, pos=pos, ax=ax, node_color=node_color if node_color is not None else "#8ab",
                     cmap=cmap, with_labels=with_labels, node_size=kwargs.pop("node_size", 120), **kwargs)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def save_figure(ax_or_fig, path: str | os.PathLike, provenance: dict | None = None) -> str:
    """Save the figure of ``ax_or_fig`` to ``path`` (PNG) and close it.

    Every PNG carries a provenance stamp as a text chunk (read back by ``probgen.provenance(path)``):
    ``provenance`` (``probgen.responsible.stamp(model, seed)``: family, model hash, seed) or, when
    not given, one that names only probgen, its version and the time.
    """
    import matplotlib.pyplot as plt

    fig = getattr(ax_or_fig, "figure", ax_or_fig)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    meta = None
    if str(path).lower().endswith(".png"):
        import json

        from .responsible.provenance import KEY, stamp

        meta = {KEY: json.dumps(stamp() if provenance is None else provenance)}
    fig.savefig(path, dpi=110, **({"metadata": meta} if meta else {}))
    plt.close(fig)
    return str(path)


# ----------------------------------------------------- latent-variable models
__all__ += ["latent_interpolation", "latent_scatter"]


def latent_interpolation(model, start: Any, end: Any, steps: int = 8, ax=None, title: str | None = None, **condition):
    """Decode codes on the straight line between ``encode(start)`` and ``encode(end)``.

    ``start``/``end`` are batches of the same size (one row of the grid each); any
    model with ``encode``/``decode`` works. Extra keywords (e.g. ``y=`` for a
    conditional VAE) go to ``decode``.
    """
    za, zb = model.encode(start), model.encode(end)
    t = torch.linspace(0, 1, steps, device=za.device)[None, :, None]
    z = (za[:, None] * (1 - t) + zb[:, None] * t).reshape(-1, za.shape[-1])
    images = model.decode(z, **condition)
    return sample_grid(images, nrow=steps, ax=ax, title=title or "latent interpolation")


def latent_scatter(model, x: Any, labels: Any = None, ax=None, title: str | None = None, s: float = 4, **encode_kw):
    """The codes of ``x`` in 2-D (their first two principal components when the code is larger), coloured by label."""
    z = torch.as_tensor(model.encode(x, **encode_kw)).detach().float().cpu()
    projected = z.shape[1] > 2
    if projected:
        centred = z - z.mean(0)
        _, _, v = torch.pca_lowrank(centred, q=2, center=False)
        z = centred @ v[:, :2]
    elif z.shape[1] == 1:
        z = torch.cat([z, torch.zeros_like(z)], 1)
    ax = _axes(ax)
    c = None if labels is None else torch.as_tensor(labels).cpu().numpy()
    points = ax.scatter(z[:, 0].numpy(), z[:, 1].numpy(), c=c, s=s, cmap="tab10" if c is not None else None)
    if c is not None and len(np.unique(c)) <= 20:
        ax.legend(*points.legend_elements(), loc="best", fontsize="x-small", markerscale=0.7)
    ax.set_xlabel("PC 1 of the codes" if projected else "code 1")
    ax.set_ylabel("PC 2 of the codes" if projected else "code 2")
    if title:
        ax.set_title(title)
    return ax


__all__ += ["piano_roll"]


def piano_roll(roll: Any, low: int, ax=None, title: str | None = None, highlight: Any = None,
               resolution: str = "quarter"):
    """A piano roll ``(frames, pitches)`` drawn with time across and MIDI pitch up (C's labelled).

    ``highlight`` is an optional roll of the same shape whose notes are drawn in another
    colour (e.g. the given soprano of a harmonisation, or a primer).

    Example:
        >>> import torch
        >>> r = torch.zeros(8, 12); r[:, [0, 4, 7]] = 1
        >>> piano_roll(r, low=60).get_ylabel()
        'MIDI pitch'
    """
    r = torch.as_tensor(np.asarray(roll)).float().cpu().numpy()
    if r.ndim != 2:
        raise ValueError(f"roll: expected a (frames, pitches) piano roll, got shape {r.shape}")
    frames, pitches = r.shape
    ax = _axes(ax, figsize=(max(4.0, frames * 0.09), 3))
    image = np.zeros((pitches, frames, 3)) + 1.0
    on = r.T > 0.5
    image[on] = (0.15, 0.2, 0.45)
    if highlight is not None:
        h = torch.as_tensor(np.asarray(highlight)).float().cpu().numpy()
        if h.shape != r.shape:
            raise ValueError(f"highlight: expected the roll's shape {r.shape}, got {h.shape}")
        image[h.T > 0.5] = (0.85, 0.3, 0.1)
    ax.imshow(image, origin="lower", aspect="auto", interpolation="nearest",
              extent=(-0.5, frames - 0.5, low - 0.5, low + pitches - 0.5))
    cs = [p for p in range(low, low + pitches) if p % 12 == 0]
    ax.set_yticks(cs, [f"C{p // 12 - 1}" for p in cs])
    ax.set_xlabel(f"frame ({resolution} notes)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    return ax
