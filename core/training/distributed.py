"""Data-parallel training over N processes with torch.distributed (``train --gpus N``).

Every process holds the same model (same seed, same initial weights) and walks the same
epoch order. Of each accumulated batch (``batch`` images), process ``r`` computes the
images at positions ``r, r + N, ...``; before the optimizer step the gradients are summed
over the processes with ``all_reduce`` (the gradient all-reduce of DistributedDataParallel,
done once per accumulated batch: DDP's own hook fires on every backward and cannot skip a
process that has no image of the batch). The summed gradient equals the single-process
sum, so the weights follow the one-process run within float rounding
(tests/test_distributed.py). Backend: NCCL on CUDA (process ``r`` on GPU ``r``), gloo
on the CPU.

What is not bit-equal to one process in the segmentation kind: BatchNorm running
statistics (each process sees its share; they are averaged over the processes at every
epoch's end) and random augmentation (each process draws its own flips). The anomaly
model's BatchNorm takes the whole batch's statistics (``sync_batchnorm``); the
detector's draws (flips, sampled anchors) are keyed by image, so they match too. The
cancel flag is agreed on by all processes (an all-reduce), so a Cancel stops all of them
at the same step.

Process 0 trains in the project and writes the run folder and the events; the others
train on a private snapshot of the same training data (defect_studio.cluster.bundle) in
a temporary folder that is removed at the end. A kind takes part when its ModelKind has
``data_parallel=True``; the others refuse ``--gpus`` above 1.

The kinds reach this module through ``current_shard()`` (None in a one-process run) or
``this_process()`` (a one-process Shard then, whose methods do nothing), and use:
``share`` (this process's images of a batch), ``reduce_grads``, ``sum`` (of per-step
figures such as sample counts, so that a mean loss becomes each process's share of the
whole batch's mean), ``sync_batchnorm`` (BatchNorm layers whose batch statistics are
those of the whole batch, over all processes: then the running statistics need no
averaging), and ``gather`` (scores of a list of images computed in shares and gathered
in order, e.g. the validation scores a threshold is fitted on, so every process fits the
same one).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from defect_studio.errors import CancelledError, UserError
from defect_studio.training.config import TrainConfigError

_SHARD: Shard | None = None


class Shard:
    """This process's place in a data-parallel job (torch.distributed initialised)."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def mine(self, position: int) -> bool:
        """Whether the image at ``position`` of an accumulated batch is this process's."""
        return position % self.world == self.rank

    def share(self, items: Sequence[Any]) -> list[Any]:
        """This process's items of a batch: those at positions ``rank, rank + world, ...``
        (none when the batch has fewer items than processes)."""
        return list(items[self.rank::self.world])

    def reduce_grads(self, model: Any) -> None:
        """Sum the gradients over the processes (one flat all-reduce)."""
        import torch
        import torch.distributed as dist

        if self.world == 1:
            return

        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:  # no image of this batch here: it adds zeros
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def average_buffers(self, model: Any) -> None:
        """Average floating-point buffers (BatchNorm running statistics) over the processes."""
        import torch.distributed as dist

        if self.world == 1:
            return
        for b in model.buffers():
            if b.is_floating_point():
                dist.all_reduce(b, op=dist.ReduceOp.SUM)
                b.div_(self.world)

    def sum(self, values: list[float]) -> list[float]:
        """The sums of ``values`` over the processes (float64)."""
        import torch
        import torch.distributed as dist

        if self.world == 1:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        import torch
        import torch.distributed as dist

        if self.world == 1:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, items: Sequence[Any], fn: Callable[[list[Any]], Sequence[Any]]
               ) -> list[Any]:
        """``fn`` of all ``items``, computed in shares: ``fn(share)`` (one result per item
        of the share) here, the others' results gathered; in the order of ``items``."""
        import torch.distributed as dist

        mine = list(fn(self.share(items)))
        if self.world == 1:
            return mine
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, mine)
        out: list[Any] = [None] * len(items)
        for rank, part in enumerate(parts):
            out[rank::self.world] = part
        return out

    def sync_batchnorm(self, module: Any) -> Any:
        """Make the BatchNorm layers of ``module`` take their training statistics over the
        whole batch, all processes' shares together (module returned; weights, buffers and
        their names unchanged). In eval mode they are ordinary BatchNorm layers."""
        from torch.nn.modules.batchnorm import _BatchNorm

        if self.world == 1:
            return module
        for m in module.modules():
            if isinstance(m, _BatchNorm) and not getattr(m, "_synced", False):
                m.__class__ = _synced_class(type(m))
        return module


_SYNCED: dict[type, type] = {}
_SUMMED: list[Any] = []


def _summed() -> Any:
    """A function that sums a tensor over the processes, whose backward sums the
    gradients over them (what torch.distributed.nn's deprecated all_reduce did)."""
    if not _SUMMED:
        import torch
        import torch.distributed as dist

        class Summed(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, t: Any) -> Any:
                t = t.clone(memory_format=torch.contiguous_format)
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                return t

            @staticmethod
            def backward(ctx: Any, grad: Any) -> Any:
                return Summed.apply(grad)

        _SUMMED.append(Summed.apply)
    return _SUMMED[0]


def _synced_class(cls: type) -> type:
    """A subclass of the BatchNorm class ``cls`` whose training forward is _sync_bn_forward."""
    if cls not in _SYNCED:
        _SYNCED[cls] = type(f"Synced{cls.__name__}", (cls,),
                            {"forward": _sync_bn_forward, "_synced": True})
    return _SYNCED[cls]


def _sync_bn_forward(self: Any, x: Any) -> Any:
    """BatchNorm over all processes' shares of the batch (an empty share takes part).

    Two all-reduces that autograd follows (_summed): the sums and the count, then the
    squared deviations from the common mean; their backward sums the gradients of the
    statistics over the processes, so each process's gradient is its share of the whole
    batch's. Running statistics move as in one process (unbiased variance).
    """
    import torch
    import torch.distributed as dist

    all_reduce = _summed()
    if not (self.training or not self.track_running_stats) or not dist.is_initialized():
        return super(type(self), self).forward(x)
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = torch.tensor([x.numel() // max(1, x.shape[1])], dtype=x.dtype, device=x.device)
    sums = all_reduce(torch.cat([x.sum(dims), count]))
    n = sums[-1]
    mean = sums[:-1] / n
    d = x - mean.view(shape)
    var = all_reduce((d * d).sum(dims)) / n
    y = d * torch.rsqrt(var + self.eps).view(shape)
    if self.affine:
        y = y * self.weight.view(shape) + self.bias.view(shape)
    if self.training and self.track_running_stats:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            f = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                 else self.momentum)
            unbiased = var * (n / (n - 1).clamp_min(1))
            self.running_mean.mul_(1 - f).add_(mean, alpha=f)
            self.running_var.mul_(1 - f).add_(unbiased, alpha=f)
    return y


def current_shard() -> Shard | None:
    """The data-parallel place of this process; None in an ordinary (one-process) run."""
    return _SHARD


def this_process() -> Shard:
    """The data-parallel place of this process; a one-process Shard (rank 0 of 1, whose
    methods change nothing) in an ordinary run."""
    return _SHARD if _SHARD is not None else Shard(0, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_parallel(config: Any, processes: int, model: str | None) -> None:
    """TrainConfigError when ``processes`` cannot train this config data-parallel."""
    from defect_studio.kinds import default_model, kind_of_model

    if not isinstance(processes, int) or isinstance(processes, bool) or not \
            1 <= processes <= 64:
        raise TrainConfigError(f"--gpus {processes!r}: give a number of GPUs from 1 to 64")
    kind = kind_of_model(model or default_model())
    if processes > 1 and not getattr(kind, "data_parallel", False):
        raise TrainConfigError(f"--gpus {processes}: the {kind.title} model trains on one "
                               "device only; leave out --gpus")
    key = kind.batch_setting
    batch = getattr(config, key, 1) if config is not None else 1
    if processes > 1 and batch < processes:
        raise TrainConfigError(
            f"--gpus {processes}: a batch is {batch} image(s) ({key}), so only "
            f"{batch} process(es) would have work; set \"{key}\" to at least {processes} "
            "(--config FILE), or use fewer GPUs")


def train_parallel(project_root: str | Path, config: Any, processes: int, *,
                   run_id: str | None = None, resume: bool = False,
                   on_event: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> str:
    """Train with ``processes`` data-parallel processes on this machine; returns the run id."""
    import multiprocessing as mp
    import queue as queue_mod

    from defect_studio.project.runs import require_run_id
    from defect_studio.training.runjob import new_run_id

    root = Path(project_root)
    if resume:
        import json

        saved = json.loads((root / "runs" / require_run_id(run_id) / "config.json")
                           .read_text(encoding="utf-8"))
        from defect_studio.kinds import default_model, kind_of_model

        model = saved.get("model")
        key = kind_of_model(model or default_model()).batch_setting
        device = saved.get("device", "auto")
        check_parallel(type("C", (), {key: saved.get(key, 1)})(), processes, model)
    else:
        check_parallel(config, processes, config.model)
        device = config.device
        run_id = run_id or new_run_id(root / "runs", config.model)
    import torch

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda and torch.cuda.device_count() < processes:
        raise TrainConfigError(f"--gpus {processes}: this machine has "
                               f"{torch.cuda.device_count()} CUDA GPU(s)")
    ctx = mp.get_context("spawn")
    events, stop = ctx.Queue(), ctx.Event()
    port = _free_port()
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(rank, processes, port, cuda, str(root), config, run_id, resume,
                               events if rank == 0 else None, stop))
             for rank in range(processes)]
    for p in procs:
        p.start()
    outcome: tuple | None = None
    try:
        while outcome is None:
            if should_stop is not None and should_stop():
                stop.set()
            try:
                item = events.get(timeout=0.2)
            except queue_mod.Empty:
                if all(not p.is_alive() for p in procs) or \
                        any(p.exitcode not in (None, 0) for p in procs):
                    codes = [p.exitcode for p in procs]
                    outcome = ("failed", f"a training process ended unexpectedly (exit codes "
                                         f"{codes})")
                continue
            if item[0] == "event":
                if on_event is not None:
                    on_event(item[1])
            else:
                outcome = item
    finally:
        if outcome is None or outcome[0] != "finished":
            stop.set()
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    state, message = outcome
    if state == "finished":
        return message
    if state == "cancelled":
        raise CancelledError(message)
    raise UserError(message)


def _worker(rank: int, world: int, port: int, cuda: bool, root: str, config: Any,
            run_id: str, resume: bool, events: Any, stop: Any) -> None:
    """One process of train_parallel (a spawned child)."""
    global _SHARD
    import torch
    import torch.distributed as dist

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    _SHARD = Shard(rank, world)
    tmp = None
    try:
        project = Path(root)
        if rank > 0:  # the same training data, in a private folder: one run folder only
            tmp = Path(tempfile.mkdtemp(prefix=f"ds-rank{rank}-"))
            project = _private_copy(Path(root), tmp, run_id if resume else None)
        from defect_studio.training import train

        sink = (lambda e: events.put(("event", e))) if events is not None else None
        try:
            out = train(project, config, run_id=run_id, resume=resume, on_event=sink,
                        should_stop=lambda: _SHARD.any(stop.is_set()))
            result = ("finished", out)
        except CancelledError as e:
            result = ("cancelled", str(e))
        except UserError as e:
            result = ("failed", str(e))
        except Exception as e:  # noqa: BLE001 - reported to the parent
            result = ("failed", f"training failed unexpectedly: {type(e).__name__}: {e}")
        if events is not None:
            events.put(result)
    finally:
        _SHARD = None
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _private_copy(root: Path, tmp: Path, resume_run: str | None) -> Path:
    """A project folder in ``tmp`` with the training data of ``root`` (links to its files)."""
    from defect_studio.cluster.bundle import build_bundle

    project = tmp / "project"
    project.mkdir()
    bundle = build_bundle(root, project)  # writes project/project.sqlite
    for rel, sha in bundle.files.items():
        if rel == "project.sqlite":
            continue
        dst = project / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.symlink(bundle.sources[sha].resolve(), dst)
    (project / "runs").mkdir(exist_ok=True)
    if resume_run:
        shutil.copytree(root / "runs" / resume_run, project / "runs" / resume_run,
                        ignore=shutil.ignore_patterns("run.lock", "*.tmp*"))
    return project
