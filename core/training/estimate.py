"""Time before training (issue 18): how long a run will take on this machine, from a few
timed steps, and what to change when that is long.

The model's kind plans the run (its ``time_probe`` entry, defect_studio.kinds.base): how
many training steps of which input size, how many forward passes for validation, on which
device and precision. This module times one step of each size with the kind's step function
(a warm-up step, then ``PROBE_STEPS`` timed ones; a few seconds), caches the figure per
model, size, device, threads and precision (in memory and in the project's
``cache/step_times.json``, with the machine and the time it was measured: a figure from
another computer, or older than CACHE_MAX_AGE_S, is measured again), and turns the plan
into a total and advice.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROBE_STEPS = 3
SLOW_STEP_S = 2.0  # a warm-up step at least this long: one timed call after it, not 3
LONG_S = 10 * 60  # an estimate above this comes with advice on what to change
CACHE_FILE = "step_times.json"
# a cached step time older than this is measured again: the machine's drivers, libraries
# and usual load change; a week keeps a day's many estimates instant
CACHE_MAX_AGE_S = 7 * 24 * 3600
_MEMORY: dict[str, tuple[float, float]] = {}  # key -> (seconds per step, when measured)
# Below this share of its threads' time (busy_watch) the CPU was busy with other programs
# while the steps were timed. Measured on 2 cores with cpu_share's windows: 0.91-0.98 on a
# quiet machine, 0.50-0.58 beside one other program that keeps a core busy (docs/models.md,
# "Time before training").
BUSY_SHARE = 0.75
# cpu_share keeps the best of this many windows: on a quiet machine one 0.2 s sample right
# after heavy work read 0.80 (of 15; 0.87-0.98 otherwise), a program holding a core keeps
# every window near 0.5
SHARE_WINDOWS = 3


@dataclass(frozen=True)
class StepKind:
    """One kind of step the run repeats: ``count`` times, ``measure()`` runs it once."""

    key: str          # what the time depends on (model, size, device, threads, precision)
    count: int
    measure: Callable[[], Any]
    # when the run does these steps: "epoch" (spread over the epochs: a time budget stops
    # them), "before" (once before the first epoch, e.g. draft masks: in the budget's time
    # but not repeated per epoch) or "after" (once after the last epoch, e.g. the final
    # scoring for the threshold: past the budget's stop)
    phase: str = "epoch"


@dataclass(frozen=True)
class RunPlan:
    """A kind's plan of a run (from its ``time_probe`` entry)."""

    steps: list[StepKind]
    device: str
    size: tuple[int, int]
    epochs: int
    crop: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)
    budget_min: float | None = None  # the run's max_minutes: it stops before passing it
    epochs_reason: str = ""  # why this many epochs, when a rule chose them
    crops: bool = True  # the kind can train on crops (the advice for a long run says so)
    threads: int = 1  # the run's CPU threads
    # the size rule's smallest input that keeps the small defects (None: not measured, or
    # the size was set by hand) and the preset's max_side (crops pay above it)
    smallest: tuple[int, int] | None = None
    max_side: int | None = None


@dataclass(frozen=True)
class TimeEstimate:
    """The estimated training time and how it was found."""

    seconds: float
    plan: RunPlan
    step_s: dict[str, float]
    advice: list[str]
    epochs_run: int = 0  # the epochs expected to run (fewer than planned: the budget stops it)
    measured_at: float | None = None  # the oldest cached figure's time; None: all timed now
    busy_share: float | None = None  # cpu_share while timing, when under BUSY_SHARE

    def text(self) -> str:
        """One line for the Train page and `train`."""
        p = self.plan
        at = f"{p.size[0]}x{p.size[1]}" + (f" (crops {p.crop[0]}x{p.crop[1]})" if p.crop else "")
        line = (f"estimated training time on this machine: {fmt_duration(self.seconds)} "
                f"({p.epochs} epoch{'s' if p.epochs != 1 else ''} at {at} on {p.device}, "
                f"{self.source()})")
        if p.epochs_reason:
            line += f"; {p.epochs_reason}"
        if self.epochs_run and self.epochs_run < p.epochs:
            line += (f"; at this speed the {p.budget_min:g} min budget stops it after "
                     f"~{self.epochs_run} of {p.epochs} epochs")
        if self.advice:
            line += "; long: " + "; ".join(self.advice)
        return line

    def source(self) -> str:
        """Where the step times come from: timed now, or cached (and how long ago)."""
        if self.busy_share is not None:
            return (f"from steps timed now while other programs used the CPU (this run's "
                    f"{self.plan.threads} threads got {self.busy_share:.0%} of their time): "
                    "a quiet machine trains faster")
        if self.measured_at is None:
            return "from steps timed now"
        age = max(0.0, time.time() - self.measured_at)
        when = ("a minute ago" if age < 90 else f"{fmt_duration(age)} ago" if age < 48 * 3600
                else f"{age / 86400:.0f} days ago")
        return f"from steps timed {when} on this machine"


def fmt_duration(seconds: float) -> str:
    """"45 s", "12 min", "2 h 05 min"."""
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{s:.0f} s"
    m = s / 60
    if m < 90:
        return f"{m:.0f} min"
    h, m = divmod(int(round(m)), 60)
    return f"{h} h {m:02d} min"


def time_step(measure: Callable[[], Any], steps: int = PROBE_STEPS) -> float:
    """Seconds per call of ``measure`` (median of ``steps`` timed calls after a warm-up;
    one timed call when the warm-up took SLOW_STEP_S or more: a batch of 8 whole 1024-px
    images takes 10+ s, three more of them would keep the form waiting half a minute)."""
    t0 = time.perf_counter()
    measure()
    if time.perf_counter() - t0 >= SLOW_STEP_S:
        steps = 1
    times = []
    for _ in range(max(1, steps)):
        t0 = time.perf_counter()
        measure()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def cpu_share(threads: int, seconds: float = 0.2) -> float:
    """The share of ``threads`` threads' time that this process gets now: CPU time over
    wall time x threads while torch multiplies large matrices (on every thread, whatever
    the wait policy) for ``seconds``. ~1 on a quiet machine; ~0.5 on 2 cores when another
    program keeps one busy. The probe steps themselves cannot tell: with passive waiting
    (defect_studio.threads) a small step's threads idle part of the time even when the CPU
    is free (0.70 measured at 32x32 on 2 threads)."""
    import torch

    threads = max(1, min(int(threads), _cores()))
    a = torch.rand(1024, 1024)
    run = with_threads(lambda: torch.mm(a, a), torch.device("cpu"), threads)
    run()
    shares = []
    for _ in range(SHARE_WINDOWS):  # the best window: a passing dip is not load (below)
        w0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - w0 < seconds / SHARE_WINDOWS:
            run()
        shares.append((time.process_time() - c0)
                      / max(1e-9, (time.perf_counter() - w0) * threads))
    return max(shares)


def _cores() -> int:
    """The cores this process may run on (its affinity, where the OS says)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


def _system_busy_s() -> float | None:
    """CPU seconds all programs have used since boot, a virtual machine's stolen time
    included (Linux's /proc/stat); None where the OS has no such file."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal
        return sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def free_share(others_s: float, wall_s: float, threads: int, cores: int) -> float:
    """The share of ``threads`` threads' time that ``cores`` cores leave when other programs
    use ``others_s`` CPU seconds in ``wall_s`` seconds."""
    free = cores - max(0.0, others_s) / max(wall_s, 1e-9)
    return max(0.0, min(1.0, free / max(1, threads)))


def busy_watch(threads: int) -> Callable[[], float]:
    """Watch the CPU while steps are timed: call before timing; the function it returns,
    called after, gives the share of ``threads`` threads' time this process could have had
    (~1 quiet): the lower of cpu_share before and after and, where the OS counts every
    program's CPU time (Linux), of what the other programs left over the whole timing (it
    sees load between the two samples, and stolen time)."""
    threads = max(1, min(int(threads), _cores()))
    before = cpu_share(threads)
    sys0, cpu0, wall0 = _system_busy_s(), time.process_time(), time.perf_counter()

    def done() -> float:
        sys1, cpu1, wall1 = _system_busy_s(), time.process_time(), time.perf_counter()
        shares = [before, cpu_share(threads)]
        if sys0 is not None and sys1 is not None and wall1 - wall0 >= 1.0:
            shares.append(free_share((sys1 - sys0) - (cpu1 - cpu0), wall1 - wall0, threads,
                                     _cores()))
        return min(shares)
    return done


def with_threads(fn: Callable[[], Any], device: Any, threads: int) -> Callable[[], None]:
    """``fn`` run with torch's CPU thread count at the run's ``threads`` (restored after),
    then, on a GPU, synchronized: a probe step takes as long as the run's step would."""
    import torch

    def run() -> None:
        before = torch.get_num_threads()
        if device.type == "cpu" and before != threads:
            torch.set_num_threads(threads)
        try:
            fn()
            if device.type == "cuda":  # pragma: no cover - no GPU on the test machines
                torch.cuda.synchronize()
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
    return run


def inference_step(model: Any, inputs: Any, device: Any, threads: int) -> Callable[[], None]:
    """One forward pass of ``model`` on ``inputs`` in eval mode without gradients (a
    validation or scoring step), run as ``with_threads`` runs it."""
    import torch

    @torch.no_grad()
    def step() -> None:
        model.eval()
        model(inputs)
    return with_threads(step, device, threads)


def _cache_path(project: Any) -> Path | None:
    root = getattr(project, "cache_dir", None)
    return None if root is None else Path(root) / CACHE_FILE


def _host() -> str:
    return socket.gethostname() or "unknown"


def _young(at: float, now: float) -> bool:
    """A figure measured at ``at`` may still be used at ``now`` (not from the future)."""
    return 0 <= now - at <= CACHE_MAX_AGE_S


def _read_cache(path: Path | None) -> dict[str, tuple[float, float]]:
    """key -> (seconds per step, when measured) of the figures this machine measured less
    than CACHE_MAX_AGE_S ago; anything else in the file (another computer's figures, old or
    damaged entries, a file of an earlier version) is left out."""
    now, host = time.time(), _host()
    return {k: (v["s"], v["at"]) for k, v in _read_entries(path).items()
            if v["host"] == host and _young(v["at"], now)}


def _read_entries(path: Path | None) -> dict[str, dict]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    return {str(k): v for k, v in data.items()
            if isinstance(v, dict) and number(v.get("s")) and 0 < v["s"] < 1e5
            and number(v.get("at")) and isinstance(v.get("host"), str)}


def _write_cache(path: Path | None, figures: dict[str, tuple[float, float]]) -> None:
    """Store this machine's new figures, keeping the file's other entries that are still
    young enough to be used (the file does not grow with every size ever tried)."""
    if path is None:
        return
    host, now = _host(), time.time()
    data = {**{k: v for k, v in _read_entries(path).items() if _young(v["at"], now)},
            **{k: {"s": s, "at": at, "host": host} for k, (s, at) in figures.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only project: the estimate still works, uncached
        pass


def estimate_time(project: Any, config: Any, *, use_cache: bool = True) -> TimeEstimate:
    """The training time of ``config`` on ``project`` (an open Project) on this machine.

    UserError when the data cannot train (the same errors `train` gives); ValueError when
    the model's kind has no time probe. ``use_cache=False`` times every step again and
    stores the new figures (a figure timed while the machine was busy is replaced)."""
    from defect_studio.kinds import kind_of_model

    kind = kind_of_model(config.model)
    if not kind.time_probe:
        raise ValueError(f"the {kind.name} kind has no time probe")
    plan: RunPlan = kind.load("time_probe")(project, config)
    path = _cache_path(project)
    now = time.time()
    cache = {**_read_cache(path), **{k: v for k, v in _MEMORY.items()
                                      if _young(v[1], now)}} if use_cache else {}
    step_s: dict[str, float] = {}
    timed: dict[str, tuple[float, float]] = {}
    cached_at: list[float] = []
    watch: Callable[[], float] | None = None
    for step in plan.steps:
        if step.count <= 0 or step.key in step_s:
            continue
        if step.key in cache:
            step_s[step.key], at = cache[step.key]
            cached_at.append(at)
            continue
        if plan.device == "cpu" and watch is None:
            watch = busy_watch(plan.threads)
        step_s[step.key] = time_step(step.measure)
        timed[step.key] = (step_s[step.key], time.time())
    share = watch() if watch is not None else None
    busy = share if share is not None and share < BUSY_SHARE else None
    if timed and busy is None:  # figures of a busy moment are not kept: timed again next
        _MEMORY.update(timed)
        _write_cache(path, timed)  # the file keeps the newest figure of each step
    phase = {"before": 0.0, "epoch": 0.0, "after": 0.0}
    for step in plan.steps:
        phase[step.phase] += step.count * step_s.get(step.key, 0.0)
    total, epochs_run = within_budget(phase["epoch"], plan.epochs, plan.budget_min,
                                      before_s=phase["before"], after_s=phase["after"])
    return TimeEstimate(total, plan, step_s, advice(total, plan), epochs_run,
                        min(cached_at) if cached_at else None, busy)


def within_budget(epochs_s: float, epochs: int, budget_min: float | None, *,
                  before_s: float = 0.0, after_s: float = 0.0) -> tuple[float, int]:
    """(seconds, epochs) of a run whose ``epochs`` epochs take ``epochs_s`` in all, after
    ``before_s`` of work before the first epoch (counted in the budget: the run's clock
    starts before it) and followed by ``after_s`` after the last (the final scoring), under
    a budget of ``budget_min`` minutes: a run stops before an epoch that would end past the
    budget (at least one epoch runs), so it takes whole epochs of ``epochs_s / epochs``."""
    epochs = max(1, int(epochs))
    if budget_min is None or before_s + epochs_s <= budget_min * 60:
        return before_s + epochs_s + after_s, epochs
    per_epoch = epochs_s / epochs
    left = max(0.0, budget_min * 60 - before_s)
    fit = max(1, min(epochs, int(left // per_epoch))) if per_epoch > 0 else epochs
    return before_s + per_epoch * fit + after_s, fit


# a smaller input is advised when the small defects allow at most this share of the pixels
SHRINK_WORTH = 0.8


def advice(seconds: float, plan: RunPlan) -> list[str]:
    """What to change when a run is long (LONG_S)."""
    if seconds <= LONG_S:
        return []
    out = [f"fewer epochs (now {plan.epochs}; time grows in proportion)"]
    if plan.crop is None:
        W, H = plan.size
        crops = plan.crops and (plan.max_side is None or max(W, H) > plan.max_side)
        if plan.smallest is None:
            out.append(f"a smaller input size (now {W}x{H}; time grows with the pixels)"
                       + (" or crops" if crops else ""))
        elif plan.smallest[0] * plan.smallest[1] <= SHRINK_WORTH * W * H:
            sw, sh = plan.smallest
            out.append(f"a smaller input size, down to {sw}x{sh} (now {W}x{H}; below it the "
                       f"small defects get thinner than the model needs; time grows with the "
                       f"pixels)" + (" or crops" if crops else ""))
        elif crops:
            out.append("crops")
    else:
        out.append("smaller crops or a smaller scale (thin defects may then vanish)")
    if plan.device == "cpu":
        out.append("a GPU (device cuda)")
    return out
