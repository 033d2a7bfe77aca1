"""Multi-process training and batched queries on ``torch.distributed``.

Three ways in:

* under ``torchrun`` (one process per CPU socket / GPU / machine), a script calls
  ``probgen.fit(model, data, distributed=True)``: each process joins the group
  (gloo on CPU, nccl on CUDA), reads its shard of every global minibatch, and the
  gradients are averaged across processes; rank 0 writes checkpoints, history and
  the progress bar;
* ``probgen.fit(model, data, distributed=N)`` starts ``N`` local processes itself
  (gloo, localhost) and returns the model trained by them;
* batched queries: ``map_shards(fn, rows)`` splits rows (a DataFrame, tensor or
  list) across the processes of the group, runs ``fn`` on each shard and gathers
  the answers in the original order; outside a group it is just ``fn(rows)``.

What is sharded: minibatches of the gradient engines (svi, mle, adversarial),
rows of Bayesian-network queries, runs of spread simulations. What is not:
MCMC chains, closed-form fits (Bayesian-network counting, Markov chains), and
validation, which every process computes in full.

The sharding follows ``DistributedSampler``: all processes draw the same global
permutation from the seed; global batch ``t`` is ``perm[t*B:(t+1)*B]`` and process
``r`` takes its elements ``r, r+W, r+2W, ...``. Each process averages its loss over
its share and the gradient average across processes is then the gradient of the
global batch, so the trajectory equals a one-process fit with batch ``B`` (up to
float rounding) whenever the loss has no per-example randomness.
"""

from __future__ import annotations

__all__ = ["fit_distributed", "map_shards", "world", "is_main_process", "shard_batch", "DistributedContext"]

import os
import socket
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the group: ``rank`` of ``size`` processes."""

    rank: int = 0
    size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1


def world() -> DistributedContext:
    """The current process group's rank and size (0 of 1 outside a group)."""
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size())
    return DistributedContext()


def is_main_process() -> bool:
    return world().rank == 0


def shard_batch(indices: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """This process's share of a global minibatch (every ``size``-th element)."""
    return indices[ctx.rank::ctx.size] if ctx.active else indices


def _under_launcher() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def _init_group(device: Any) -> torch.device | None:
    """Join the group torchrun describes in the environment; pick this rank's device."""
    want_cuda = device is not None and str(device).startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return None


def fit_distributed(model, data: Any, inference: str, **options: Any):
    """Fit on several processes; see the module docstring.

    ``distributed=True`` expects to run under ``torchrun``; ``distributed=N`` (an
    integer ≥ 2) starts ``N`` local worker processes with the gloo backend.
    """
    from . import run

    how = options.pop("distributed")
    if isinstance(how, bool) or how is True:
        if not _under_launcher():
            raise ValueError("distributed: True means 'I run under torchrun' but no RANK/WORLD_SIZE is set; "
                             "launch with `torchrun --nproc_per_node N script.py`, or pass distributed=N to start "
                             "N local processes")
        device = _init_group(options.get("device"))
        if device is not None:
            options["device"] = device
        return run(model, data, inference=inference, distributed=True, **options)
    if not isinstance(how, int) or how < 1:
        raise ValueError(f"distributed: expected True (under torchrun) or a number of local processes, got {how!r}")
    if how == 1:
        return run(model, data, inference=inference, **options)
    if options.get("device") not in (None, "cpu") and str(options.get("device")) != "cpu":
        raise ValueError("distributed: local processes use the gloo backend on CPU; for GPUs launch with torchrun")
    return _spawn_local(model, data, inference, how, options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_local(model, data, inference: str, nprocs: int, options: dict):
    """Start ``nprocs`` worker processes on this machine and wait for them.

    The workers are fresh interpreters (``python -m probgen.infer.distributed``),
    not forks or ``multiprocessing`` spawns, so the caller's script is never
    re-imported: this works from notebooks and from scripts without a
    ``__main__`` guard. Model, data and options travel through a temporary folder
    as safetensors and JSON.
    """
    import json
    import subprocess
    import sys

    from safetensors.torch import save_file

    from ..core.io import load, save
    from ..core.result import FitResult

    if options.get("callbacks"):
        raise ValueError("callbacks: not supported with distributed=N (they cannot be sent to worker processes); "
                         "run under torchrun with distributed=True to use callbacks")
    from ..core.random import seeded

    # a family that builds its networks from the data does it in prepare_data: under the fit's
    # seed, as its one-process fit does (``_build_for_fit``), so both start from the same weights
    with seeded(options.get("seed")):
        tensors = model.prepare_data(data)
    payload = {f"data_{i}": t.detach().cpu().contiguous() for i, t in enumerate(tensors)}
    if options.get("validation") is not None:
        val = model.prepare_data(options.pop("validation"), "validation")
        payload.update({f"val_{i}": t.detach().cpu().contiguous() for i, t in enumerate(val)})
    for key in ("device", "callbacks"):
        options.pop(key, None)
    if options.get("checkpoint") is not None:
        options["checkpoint"] = os.fspath(options["checkpoint"])
    try:
        options_json = json.dumps({"inference": inference, "options": options})
    except TypeError as exc:
        raise ValueError(f"distributed: options must be plain values to reach worker processes ({exc})") from exc
    with tempfile.TemporaryDirectory(prefix="probgen-ddp-") as tmp:
        save(model, os.path.join(tmp, "model.safetensors"))
        save_file(payload, os.path.join(tmp, "data.safetensors"))
        with open(os.path.join(tmp, "options.json"), "w") as handle:
            handle.write(options_json)
        port = _free_port()
        procs = []
        for rank in range(nprocs):
            env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                   "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nprocs), "LOCAL_WORLD_SIZE": str(nprocs)}
            env.setdefault("OMP_NUM_THREADS", "1")
            procs.append(subprocess.Popen([sys.executable, "-m", "probgen.infer.distributed", tmp], env=env,
                                          stdout=subprocess.PIPE if rank else None, stderr=subprocess.PIPE, text=True))
        errors = []
        for rank, proc in enumerate(procs):
            _, err = proc.communicate()
            if proc.returncode:
                errors.append(f"rank {rank} exited with {proc.returncode}:\n{err[-3000:]}")
        if errors:
            raise RuntimeError("distributed: a worker process failed\n" + "\n".join(errors))
        trained = load(os.path.join(tmp, "trained.safetensors"))
        model.set_state_json(trained.get_state_json())
        model.load_state_dict(trained.state_dict())
        history = pd.read_json(os.path.join(tmp, "history.json"), orient="split")
        with open(os.path.join(tmp, "info.json")) as handle:
            info = json.load(handle)
    return FitResult(model=model, engine=inference, history=history, wall_time=float(info.pop("wall_time")),
                     device="cpu", info={**info, "processes": nprocs})


def _worker(tmp: str) -> None:
    """One worker of ``distributed=N``: join the group from the environment, fit, rank 0 writes."""
    import json

    from safetensors.torch import load_file

    import probgen  # noqa: F401  (sets Pyro's module-local parameters)

    from ..core.io import load, save
    from . import run

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    dist.init_process_group("gloo")
    try:
        model = load(os.path.join(tmp, "model.safetensors"))
        tensors = load_file(os.path.join(tmp, "data.safetensors"))
        data = tuple(tensors[f"data_{i}"] for i in range(sum(k.startswith("data_") for k in tensors)))
        val = tuple(tensors[f"val_{i}"] for i in range(sum(k.startswith("val_") for k in tensors)))
        with open(os.path.join(tmp, "options.json")) as handle:
            spec = json.load(handle)
        options = spec["options"]
        if val:
            options["validation"] = val[0] if len(val) == 1 else val
        if dist.get_rank() != 0:
            options["progress"] = False
        result = run(model, data[0] if len(data) == 1 else data, inference=spec["inference"], distributed=True,
                     **options)
        if dist.get_rank() == 0:
            save(model, os.path.join(tmp, "trained.safetensors"))
            result.history.to_json(os.path.join(tmp, "history.json"), orient="split")
            info = {k: v for k, v in result.info.items() if isinstance(v, (int, float, bool, str))}
            with open(os.path.join(tmp, "info.json"), "w") as handle:
                json.dump({**info, "wall_time": result.wall_time}, handle)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def map_shards(fn: Callable[[Any], Any], rows: Any) -> Any:
    """Run ``fn`` on this process's contiguous shard of ``rows``; gather all answers in order.

    ``rows`` is a DataFrame, tensor, array or list; ``fn`` returns the same kind of
    thing (one answer per row). Outside a process group this is ``fn(rows)``.

    Example:
        >>> import pandas as pd
        >>> map_shards(lambda df: df * 2, pd.DataFrame({"a": [1, 2, 3]}))["a"].tolist()
        [2, 4, 6]
    """
    ctx = world()
    if not ctx.active:
        return fn(rows)
    n = len(rows)
    bounds = [n * r // ctx.size for r in range(ctx.size + 1)]
    lo, hi = bounds[ctx.rank], bounds[ctx.rank + 1]
    # with fewer rows than processes some shares are empty: those processes skip ``fn`` (which
    # need not accept zero rows) and contribute nothing to the gathered answer
    answer = None
    if hi > lo:
        part = rows.iloc[lo:hi] if isinstance(rows, (pd.DataFrame, pd.Series)) else rows[lo:hi]
        answer = fn(part)
        if isinstance(answer, torch.Tensor):
            answer = answer.cpu()
    gathered: list = [None] * ctx.size
    dist.all_gather_object(gathered, answer)
    gathered = [g for g, r in zip(gathered, range(ctx.size)) if bounds[r + 1] > bounds[r]]
    if not gathered:  # no rows at all
        return fn(rows)
    first = gathered[0]
    if isinstance(first, (pd.DataFrame, pd.Series)):
        return pd.concat(gathered)
    if isinstance(first, torch.Tensor):
        return torch.cat(gathered)
    if hasattr(first, "shape"):
        import numpy as np

        return np.concatenate(gathered)
    return [item for chunk in gathered for item in chunk]


if __name__ == "__main__":
    import sys

    _worker(sys.argv[1])

