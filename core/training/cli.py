"""`defect-studio train`: one training job in this process.

With --events every event is one JSON line on stdout (the GUI reads these);
human-readable messages go to stderr. SIGTERM or SIGINT cancels cleanly at the
next step (exit code 3); a second SIGINT stops at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from defect_studio.errors import CancelledError, UserError

EXIT_CANCELLED = 3


def config_from_args(args: argparse.Namespace) -> Any:
    """The run's config from --preset, then --config FILE, then the single options.

    The model's kind (defect_studio.kinds; the default model without --model) builds its
    own config class from the arguments (``kind.config_from_args(args)``).
    """
    from defect_studio.kinds import default_model, kind_of_model

    return kind_of_model(args.model or default_model()).config_from_args(args)


class _StopFlag:
    """Set by SIGTERM/SIGINT; training polls it between steps."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self.stop = True
            print("stopping after the current step...", file=sys.stderr, flush=True)
            if signum == signal.SIGINT:  # a second Ctrl+C interrupts at once
                signal.signal(signal.SIGINT, signal.default_int_handler)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _print_json(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _HumanPrinter:
    """One readable line per epoch (and the start, validation and end)."""

    def __init__(self, stream: Any, preset: str = "") -> None:
        self.stream = stream
        self.preset = preset  # the start line's ", preset ..." ("" when the user chose it)
        self.eta = 0.0
        self.epochs = 0

    def __call__(self, e: dict) -> None:
        kind = e["event"]
        if kind == "started":
            self.epochs = e["epochs"]
            resumed = f", resuming after epoch {e['start_epoch']}" if e.get("start_epoch") else ""
            self._say(f"run {e['run_id']}: {e['config']['model']} on {e['device']}, "
                      f"{e['n_train']} training / {e['n_val']} validation images, "
                      f"{e['epochs']} epochs{resumed}"
                      + (f", {e['precision']}"
                         if e.get("precision", "float32") != "float32" else "")
                      + (f", preset {self.preset}" if self.preset else ""))
            size = e["config"].get("input_size")
            if size and not any(str(n).startswith("input ") for n in e.get("notes") or []):
                self._say(f"input {size[0]}x{size[1]}: as set")
            for note in e.get("notes") or []:
                self._say(note if str(note).startswith("input ") else f"note: {note}")
        elif kind == "progress":
            self.eta = e["eta_s"]
            self.elapsed = e["elapsed_s"]
        elif kind == "epoch":
            self._say(f"epoch {e['epoch']}/{self.epochs}  loss {e['loss']:.4f} "
                      f"(seg {e['loss_seg']:.4f}, dec {e['loss_dec']:.4f})  "
                      f"elapsed {_fmt_time(getattr(self, 'elapsed', 0))}  "
                      f"eta {_fmt_time(self.eta)}")
        elif kind == "validation":
            ap = "n/a" if e["ap"] is None else f"{e['ap']:.4f}"
            auc = "n/a" if e["auc"] is None else f"{e['auc']:.4f}"
            self._say(f"  validation: AP {ap}  AUC {auc}")
        elif kind == "finished":
            m = e["metrics"]
            ap = "n/a" if m.get("ap") is None else f"{m['ap']:.4f}"
            auc = "n/a" if m.get("auc") is None else f"{m['auc']:.4f}"
            self._say(f"finished run {e['run_id']} in {_fmt_time(e['elapsed_s'])}: "
                      f"{m['split']} AP {ap}, AUC {auc}, threshold {e['threshold']:.4f}")
            if m.get("selection") == "best_val_ap":
                self._say(f"kept epoch {m.get('best_epoch')} (best validation AP); threshold "
                          f"from {m.get('threshold_source')}")
            elif m.get("threshold_source"):
                self._say(f"kept the last epoch; threshold from {m['threshold_source']}")
            if e.get("note"):
                self._say(f"note: {e['note']}")
        elif kind == "cancelled":
            self._say(f"cancelled run {e['run_id']} after {e['epoch']} complete epoch(s)")

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def print_estimate(project_root: Any, config: Any, stream: Any, *, processes: int = 1) -> bool:
    """Print the estimated training time (defect_studio.training.estimate) before a run; a
    kind without a time probe, or data that cannot train (`train` says why next), prints
    nothing. True when printed. With ``processes`` > 1 (`--gpus N`) the figure is still
    one process's (how N processes share the work was not measured here), and it says so."""
    from defect_studio.errors import UserError

    try:
        est = _estimate(project_root, config)
    except (UserError, ValueError, OSError):
        return False
    print(_estimate_text(est, processes), file=stream, flush=True)
    return True


def _estimate(project_root: Any, config: Any, fresh: bool = False) -> Any:
    from defect_studio.project import Project
    from defect_studio.training.estimate import estimate_time

    with Project.open(project_root, readonly=True) as project:
        return estimate_time(project, config, use_cache=not fresh)


def _estimate_text(est: Any, processes: int) -> str:
    text = est.text()
    if processes > 1:
        text += (f"; timed for one process: --gpus {processes} shares each epoch's images "
                 f"among {processes} processes (faster with a GPU each; CPU processes share "
                 f"this machine's cores)")
    return text


def estimate_only(args: argparse.Namespace) -> int:
    """`train --estimate-only`: time the run's steps afresh (cached figures are replaced, as
    by the Train page's Estimate button), print the estimate, train nothing. UserError when
    there is no new run to plan or the data cannot train (what `train` would say)."""
    for opt, value in (("--resume", args.resume), ("--attach", getattr(args, "attach", None)),
                       ("--cluster", getattr(args, "cluster", None))):
        if value:
            raise UserError(f"--estimate-only times a new run on this machine; it cannot "
                            f"go with {opt}")
    config = config_from_args(args)
    try:
        est = _estimate(args.project, config, fresh=True)
    except ValueError as e:  # a model kind without a time probe
        raise UserError(f"no time estimate: {e}") from None
    processes = getattr(args, "gpus", None) or 1
    text = _estimate_text(est, processes)
    if args.events:
        _print_json({"event": "estimate", "seconds": round(est.seconds, 1),
                     "epochs": est.plan.epochs, "epochs_run": est.epochs_run or est.plan.epochs,
                     "device": est.plan.device, "busy_share": est.busy_share, "text": text})
    else:
        print(text, flush=True)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of `defect-studio train` (exit 0 finished, 2 user error, 3 cancelled)."""
    from defect_studio.training import train

    if getattr(args, "estimate_only", False):
        return estimate_only(args)
    if getattr(args, "attach", None):  # follow a cluster job again (defect_studio.cluster)
        from defect_studio.cluster.cli import attach_run

        stop = _StopFlag()
        stop.install()
        return attach_run(args, _print_json if args.events else _HumanPrinter(sys.stdout), stop)
    if args.resume:
        given = [opt for opt, v in (("--preset", args.preset), ("--config", args.config),
                                    ("--epochs", args.epochs), ("--size", args.size),
                                    ("--model", args.model), ("--run-id", args.run_id))
                 if v is not None]
        if given:
            print(f"note: --resume continues with the run's saved settings; ignoring "
                  f"{', '.join(given)}", file=sys.stderr)
        config, run_id = None, args.resume
    else:
        config, run_id = config_from_args(args), args.run_id

    if config is not None and not args.events and not getattr(args, "no_estimate", False):
        if getattr(args, "cluster", None):
            # the probe would time this machine, not the cluster's (a GPU server's) speed
            print(f"no time estimate: the run trains on the cluster at {args.cluster}, whose "
                  f"speed this machine cannot time", file=sys.stdout, flush=True)
        else:
            print_estimate(args.project, config, sys.stdout,
                           processes=getattr(args, "gpus", None) or 1)
    stop = _StopFlag()
    stop.install()
    # the start line names the preset `train` chose when the user named none
    chosen = type(config).preset_of_args(args) if config is not None and not args.preset else None
    default = (f"{chosen} (the default; --preset thorough: the papers' recipe at the data's "
               f"scale)" if chosen else "")
    sink = _print_json if args.events else _HumanPrinter(sys.stdout, default)
    if getattr(args, "cluster", None) or args.resume:  # a Ray cluster (defect_studio.cluster)
        from defect_studio.cluster.cli import LOCAL, train_cluster, wants_cluster

        if wants_cluster(args):
            code = train_cluster(args, config, run_id, sink, stop)
            if code is not LOCAL:
                return code
    gpus = getattr(args, "gpus", None)
    try:
        if gpus is not None:  # data-parallel over N processes (defect_studio.training.distributed)
            from defect_studio.training.distributed import check_parallel, train_parallel

            if gpus != 1 or not isinstance(gpus, int):
                train_parallel(args.project, config, gpus, run_id=run_id,
                               resume=bool(args.resume), on_event=sink, should_stop=stop)
                return 0
            check_parallel(config, gpus, getattr(config, "model", None))
        train(args.project, config, run_id=run_id, resume=bool(args.resume), on_event=sink,
              should_stop=stop)
    except CancelledError as e:
        print(str(e), file=sys.stderr, flush=True)
        return EXIT_CANCELLED
    except UserError as e:
        hint = good_parts_hint(str(e))
        if hint:
            raise type(e)(f"{e}; {hint}") from None
        raise
    return 0


def good_parts_hint(message: str) -> str:
    """For a failure for want of defective images: the model that trains on OK parts alone
    ("" otherwise)."""
    from defect_studio.kinds import kinds

    if "no defective" not in message.lower():
        return ""
    for kind in kinds():
        if kind.trains_on == "ok_only":
            return (f"with good parts only, train the {kind.model_title(kind.default_model)} "
                    f"(--model {kind.default_model}): it proposes the first defects to label")
    return ""
