"""The training loop shared by the gradient engines.

Minibatches, optimizer, progress bar, history, validation with early stopping,
callbacks and checkpoints live here once; an engine supplies only a ``loss_fn``
(a differentiable loss for one minibatch) or a ``step_fn`` (a whole custom step,
for engines with several optimizers).
"""

from __future__ import annotations

__all__ = ["train", "make_optimizer", "iterate_minibatches", "synchronize_gradients"]

import copy
import math
import time
from typing import Callable, Iterator, Sequence

import pandas as pd
import torch

from ..core.progress import progress_bar
from ..core.random import seeded
from ..core.result import FitResult
from ..core.rows import require_examples
from .diagnostics import NonFiniteGuard
from .distributed import DistributedContext, shard_batch, world
from .options import FitOptions
from .protocols import AveragedWeights, hook


def make_optimizer(params, opts: FitOptions, lr: float | None = None, betas: tuple[float, float] | None = None,
                   foreach: bool | None = None):
    """A torch optimizer named by ``opts.optimizer`` (``foreach=True``: one multi-tensor update per step,
    which matters when the networks are small and the step is dominated by per-tensor overhead)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("fit: the model has no trainable parameters")
    lr = opts.lr if lr is None else lr
    kw = {"lr": lr, "weight_decay": opts.weight_decay, **({"foreach": foreach} if foreach is not None else {})}
    if opts.optimizer in ("adam", "clipped_adam"):
        return torch.optim.Adam(params, **kw, **({"betas": betas} if betas else {}))
    if opts.optimizer == "adamw":
        return torch.optim.AdamW(params, **kw, **({"betas": betas} if betas else {}))
    return torch.optim.SGD(params, momentum=0.9, **kw)


def iterate_minibatches(tensors: Sequence[torch.Tensor], batch_size: int, generator: torch.Generator,
                        ctx: DistributedContext | None = None) -> Iterator[tuple]:
    """Endless shuffled minibatches (one reshuffle per epoch).

    In a process group every process draws the same permutation and keeps its
    share of each global batch (see ``probgen.infer.distributed``).
    """
    n = len(tensors[0])
    ctx = ctx or DistributedContext()
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = shard_batch(order[start:start + batch_size], ctx)
            if len(idx) == 0:
                continue  # a last partial batch smaller than the number of processes
            idx = idx.to(tensors[0].device)
            yield tuple(t[idx] for t in tensors)


def train(
    model: torch.nn.Module,
    tensors: tuple[torch.Tensor, ...],
    opts: FitOptions,
    *,
    engine: str,
    loss_fn: Callable[[tuple], torch.Tensor] | None = None,
    step_fn: Callable[[tuple, int], dict] | None = None,
    eval_fn: Callable[[tuple], float] | None = None,
    val_tensors: tuple[torch.Tensor, ...] | None = None,
    default_steps: int = 1000,
    parameters: Callable[[], Sequence[torch.nn.Parameter]] | None = None,
    warmup: Callable[[tuple], None] | None = None,
    segment_fn: Callable[[tuple, torch.Tensor, int, int], dict] | None = None,
) -> FitResult:
    """Run the loop and return a ``FitResult``.

    Exactly one of ``loss_fn`` (returns a scalar to minimise; the loop owns the
    optimizer) and ``step_fn`` (does its own update, returns a dict of floats) is given.

    ``segment_fn(tensors, rows, batch_size, first_step) -> dict`` (with ``step_fn``, outside a
    process group) is the fused path for cheap steps: the loop hands it the shuffled row
    indices of several consecutive minibatches (up to the end of the epoch, the next
    evaluation / checkpoint or the last step), it runs their updates in one call and the loop
    records one history row per segment (``step`` = its last update); callbacks, validation,
    early stopping, checkpoints and the progress bar act at segment ends. The minibatches are
    the ones ``iterate_minibatches`` draws from the same generator.
    """
    if (loss_fn is None) == (step_fn is None):
        raise TypeError("train: give exactly one of loss_fn and step_fn")
    if opts.privacy is not None:  # DP-SGD: Poisson batches, per-record clipping, noise (infer/privacy.py)
        from .privacy import train_private

        return train_private(model, tensors, opts, engine=engine, loss_fn=loss_fn, step_fn=step_fn,
                             eval_fn=eval_fn, val_tensors=val_tensors, default_steps=default_steps,
                             parameters=parameters, warmup=warmup)
    if segment_fn is not None and step_fn is None:
        raise TypeError("train: segment_fn goes with step_fn")
    n = require_examples(len(tensors[0]), "data")
    ctx = world() if opts.distributed else DistributedContext()
    batch_size = min(opts.batch_size or min(n, 256), n)
    if ctx.active and batch_size % ctx.size:
        raise ValueError(f"batch_size: with {ctx.size} processes the global batch size must be a multiple of "
                         f"{ctx.size}, got {batch_size}")
    steps_per_epoch = math.ceil(n / batch_size)
    total = opts.steps or (opts.epochs * steps_per_epoch if opts.epochs else default_steps)
    eval_every = opts.eval_every or (steps_per_epoch if opts.epochs else max(1, total // 20))
    start = time.perf_counter()
    records: list[dict] = []
    validation = _Validation(model, eval_fn, val_tensors, opts.patience)
    stopped_early = False
    with seeded(opts.seed):
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))
        batches = iterate_minibatches(tensors, batch_size, generator, ctx)
        optimizer = None
        compute_loss = loss_fn
        if loss_fn is not None:
            first = next(batches)
            if warmup is not None:
                warmup(first)  # lets lazily-built parameters exist before the optimizer sees them
            optimizer = make_optimizer(parameters() if parameters else model.parameters(), opts)
            pending = [first]
            if ctx.active:
                compute_loss = _data_parallel(model, loss_fn)
        else:
            pending = []
            if ctx.active:
                _broadcast_state(model)
        model.train()
        main = ctx.rank == 0
        guard = NonFiniteGuard(model, engine, opts.lr)  # NaN/inf loss: stop, keep the last good state
        after_step = hook(model, AveragedWeights)
        if segment_fn is not None and not ctx.active:
            bar = progress_bar(total=total, enabled=opts.progress, desc=f"{type(model).__name__} [{engine}]")
            stopped_early, steps_done = _train_segments(
                model, tensors, segment_fn, generator, batch_size, steps_per_epoch, total, eval_every, opts,
                validation, bar, records, guard)
            bar.close()
            return _finish(model, opts, records, validation.best, stopped_early, batch_size, steps_done, ctx, engine,
                           start)
        bar = progress_bar(range(total), enabled=opts.progress and main, desc=f"{type(model).__name__} [{engine}]")
        for step in bar:
            batch = pending.pop() if pending else next(batches)
            if loss_fn is not None:
                optimizer.zero_grad(set_to_none=True)
                loss = compute_loss(batch)
                if not torch.isfinite(loss):
                    raise guard.failure(step, loss.item(), records=records)
                loss.backward()
                if opts.clip_norm is not None or opts.optimizer == "clipped_adam":
                    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                                   opts.clip_norm or 10.0)
                optimizer.step()
                if after_step is not None:
                    after_step()  # e.g. EMA weights
                record = {"step": step, "loss": float(loss.detach())}
            else:
                record = {"step": step, **step_fn(batch, step)}
                guard.check(step, record, records)
            if ctx.active:
                record = _average_record(record)
            record["epoch"] = step // steps_per_epoch
            if (step + 1) % eval_every == 0 or step + 1 == total:
                validation.evaluate(record, step)
                guard.keep(step)
                if main:
                    _checkpoint(model, opts)
            records.append(record)
            if step % max(1, total // 100) == 0:
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in ("loss", "val_loss")})
            if any(cb(step, record, model) for cb in opts.callbacks):
                break
            if validation.exhausted:
                stopped_early = True
                break
        bar.close()
    return _finish(model, opts, records, validation.best, stopped_early, batch_size, len(records), ctx, engine,
                   start)


def _finish(model, opts: FitOptions, records: list[dict], best: tuple, stopped_early: bool, batch_size: int,
            steps: int, ctx: DistributedContext, engine: str, start: float) -> FitResult:
    if opts.patience is not None and best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    info = {"batch_size": batch_size, "steps": steps, "stopped_early": stopped_early}
    if ctx.active:
        info.update(processes=ctx.size, rank=ctx.rank)
    if best[1] is not None:
        info.update(best_val_loss=best[0], best_step=best[2])
    return FitResult(model=model, engine=engine, history=pd.DataFrame.from_records(records),
                     wall_time=time.perf_counter() - start, device=str(opts.device), info=info)


def _train_segments(model, tensors, segment_fn, generator, batch_size: int, steps_per_epoch: int, total: int,
                    eval_every: int, opts: FitOptions, validation: "_Validation", bar, records: list[dict],
                    guard: NonFiniteGuard):
    """The fused path of ``train``: one ``segment_fn`` call and one history row per segment.

    Written for models whose update costs a few microseconds of arithmetic (an RBM on
    minibatches of 10): there the per-step Python around the update (history dict, callback
    and progress checks, minibatch gather) cost as much as the update itself.
    """
    n = len(tensors[0])
    step = 0
    device = tensors[0].device
    while step < total:
        order = torch.randperm(n, generator=generator).to(device)  # the draw iterate_minibatches makes
        epoch_start = step
        while step < total and step - epoch_start < steps_per_epoch:
            boundary = (step // eval_every + 1) * eval_every  # next evaluation / checkpoint
            end = min(epoch_start + steps_per_epoch, boundary, total)
            first_row = (step - epoch_start) * batch_size
            rows = order[first_row:first_row + (end - step) * batch_size]
            record = {"step": end - 1, **segment_fn(tensors, rows, batch_size, step),
                      "epoch": epoch_start // steps_per_epoch}
            guard.check(end - 1, record, records)
            if end % eval_every == 0 or end == total:
                validation.evaluate(record, end - 1)
                guard.keep(end - 1)
                _checkpoint(model, opts)
            records.append(record)
            bar.update(end - step)
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in ("loss", "val_loss")})
            step = end
            if any(cb(end - 1, record, model) for cb in opts.callbacks):
                return False, step
            if validation.exhausted:
                return True, step
    return False, step


class _Validation:
    """Validation at evaluation points, shared by both paths of ``train``: writes ``val_loss``
    into the record, keeps the best state and counts evaluations since it (early stopping)."""

    def __init__(self, model, eval_fn, val_tensors, patience: int | None):
        self.model, self.eval_fn, self.val_tensors, self.patience = model, eval_fn, val_tensors, patience
        self.best: tuple = (math.inf, None, -1)
        self.since_best = 0

    def evaluate(self, record: dict, step: int) -> None:
        if self.eval_fn is None or self.val_tensors is None:
            return
        self.model.eval()
        with torch.no_grad():
            record["val_loss"] = float(self.eval_fn(self.val_tensors))
        self.model.train()
        if record["val_loss"] < self.best[0]:
            self.best = (record["val_loss"], copy.deepcopy(self.model.state_dict()), step)
            self.since_best = 0
        else:
            self.since_best += 1

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience


def _checkpoint(model, opts: FitOptions) -> None:
    if opts.checkpoint is not None:
        from ..core.io import save

        save(model, opts.checkpoint)


class _LossModule(torch.nn.Module):
    """Holds the model so that DistributedDataParallel sees its parameters and the
    loss is computed in ``forward`` (DDP's gradient hooks need the forward call)."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[tuple], torch.Tensor]):
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, *batch: torch.Tensor) -> torch.Tensor:
        return self._loss_fn(batch)


def _data_parallel(model: torch.nn.Module, loss_fn: Callable[[tuple], torch.Tensor]) -> Callable[[tuple], torch.Tensor]:
    """Wrap the loss in DistributedDataParallel: rank 0's weights are broadcast at
    construction and gradients are averaged across processes in ``backward``."""
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(_LossModule(model, loss_fn), find_unused_parameters=True)
    return lambda batch: ddp(*batch)


def _broadcast_state(model: torch.nn.Module) -> None:
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def _average_record(record: dict) -> dict:
    """The mean of each logged number over the processes (so rank 0 logs global figures)."""
    import torch.distributed as dist

    keys = [k for k, v in record.items() if k != "step" and isinstance(v, float)]
    if not keys:
        return record
    values = torch.tensor([record[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    values /= dist.get_world_size()
    return {**record, **dict(zip(keys, values.tolist()))}


def synchronize_gradients(optimizer: torch.optim.Optimizer) -> None:
    """In a process group, average gradients across processes before each ``optimizer.step()``.

    For engines with several optimizers (adversarial, contrastive divergence), where
    one DistributedDataParallel wrapper per loss would not fit; the effect on the
    update is the same as DDP's averaging.
    """
    import torch.distributed as dist

    def average(opt, args, kwargs):
        size = dist.get_world_size()
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= size

    if dist.is_initialized() and dist.get_world_size() > 1:
        optimizer.register_step_pre_hook(average)

