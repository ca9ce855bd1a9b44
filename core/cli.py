"""The `defect-studio` command line.

No sub-command starts the GUI; every sub-command runs headless. This module only
builds the argument parser: each command's work lives in the module that owns it
(imported lazily, so `defect-studio info` does not pay for importing torch).

The line runtime (the `defect-studio-runtime` distribution of installer/runtime/, no torch,
no Qt) runs
the same parser with only ``RUNTIME_COMMANDS`` (``line_main``): `predict --model`, `watch`,
`model-info --model PACKAGE` and `--version`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from defect_studio.errors import CliError  # noqa: F401 - re-exported: raised by command handlers

# command name -> "module:function"; each function takes the parsed args and returns an exit code.
HANDLERS = {
    "demo": "defect_studio.demo.cli:cmd_demo",
    "import": "defect_studio.io.cli:cmd_import",
    "export": "defect_studio.io.cli:cmd_export",
    "info": "defect_studio.project.cli:cmd_info",
    "split": "defect_studio.project.cli:cmd_split",
    "label": "defect_studio.project.cli:cmd_label",
    "runs": "defect_studio.project.cli:cmd_runs",
    "restore": "defect_studio.project.cli:cmd_restore",
    "train": "defect_studio.training.cli:cmd_train",
    "sweep": "defect_studio.training.sweep:cmd_sweep",
    "evaluate": "defect_studio.evaluation.cli:cmd_evaluate",
    "predict": "defect_studio.inference.cli:cmd_predict",
    "model-info": "defect_studio.kinds.segdec.cli:cmd_model_info",
    "export-model": "defect_studio.deploy.cli:cmd_export_model",
    "watch": "defect_studio.deploy.cli:cmd_watch",
    "cluster-info": "defect_studio.cluster.cli:cmd_cluster_info",
}
# the commands of the line runtime (installer/runtime/: every module they import ships with it)
RUNTIME_COMMANDS = ("predict", "model-info", "watch")
# `model-info --model FOLDER`: an export package's summary, without torch
PACKAGE_INFO = "defect_studio.deploy.info:cmd_package_info"
LINE_DESCRIPTION = ("Defect Studio line runtime: score parts with an export package (no torch, "
                    "no Qt). Training, labelling and the desktop app are in the full install.")


def build_parser(line: bool = False) -> argparse.ArgumentParser:
    """The parser of every command, or with ``line`` only the line runtime's."""
    p = argparse.ArgumentParser(
        prog="defect-studio",
        description=LINE_DESCRIPTION if line else
        "Defect Studio: label, train and review surface-defect models. "
        "Without a command, the desktop app starts.",
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    if not line:
        _add_studio_commands(sub)
    _add_runtime_commands(sub, line)
    return p


def _add_studio_commands(sub: argparse._SubParsersAction) -> None:
    """The commands that need the full install (project, training, evaluation, the app)."""
    from defect_studio.io.importers import IMPORT_FORMATS  # the formats live with the importers

    s = sub.add_parser("gui", help="start the desktop app (the default)")
    s.add_argument("--project", help="project folder to open")

    s = sub.add_parser("demo", help="generate the demo project (textured surfaces with defects)")
    s.add_argument("--project", required=True, help="folder of the new project")
    s.add_argument("--count", type=int, default=540, help="number of images (default 540)")
    s.add_argument("--size", default="256x256", help="image size WxH (default 256x256)")
    s.add_argument("--defect-scale", type=float, default=None, dest="defect_scale",
                   help="defect size as on a 256-px part times this (1: scratches 3-5 px "
                        "wide at any --size; default: defects grow with the image)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--defect-rate", type=float, default=0.25,
                   help="share of defective images (default 0.25)")
    s.add_argument("--test-share", type=float, default=0.40,
                   help="share of the images held out for testing (default 0.40; 0.15 "
                        "of them go to validation, the rest to training)")

    s = sub.add_parser("import", help="import images, labels and masks from a folder or file")
    s.add_argument("source", help="folder (or annotation file) to import from")
    s.add_argument("--project", required=True, help="project folder (created if missing)")
    s.add_argument("--format", default="auto", choices=IMPORT_FORMATS)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--copy", dest="copy", action="store_true", default=True,
                   help="copy the images into the project (default)")
    g.add_argument("--link", dest="copy", action="store_false",
                   help="reference the images where they are")
    s.add_argument("--json", action="store_true", help="print the import report as JSON")
    s.add_argument("--report", help="write the per-file report (CSV) to this file")
    s.add_argument("--allow-outside", action="store_true", dest="allow_outside",
                   help="import images that annotation files name outside the source folder")

    s = sub.add_parser("export", help="export labels and masks")
    s.add_argument("--project", required=True)
    s.add_argument("--format", required=True, choices=["masks", "coco", "yolo", "voc"])
    s.add_argument("--out", required=True, help="output folder")

    s = sub.add_parser("info", help="counts of images, labels, masks and splits")
    s.add_argument("--project", required=True)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("split", help="(re)assign train/val/test splits, stratified and seeded")
    s.add_argument("--project", required=True)
    s.add_argument("--ratios", default="0.7,0.15,0.15",
                   help="train,val,test (default 0.7,0.15,0.15)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--all", action="store_true",
                   help="reassign every unpinned image, not only new ones")

    s = sub.add_parser("label", help="set image-level labels from the command line")
    s.add_argument("--project", required=True)
    s.add_argument("--label", required=True, choices=["ok", "defective", "unlabeled"])
    s.add_argument("images", nargs="+", help="image ids or project-relative paths")

    s = sub.add_parser("runs", help="list training runs; --activate RUN makes one the active run")
    s.add_argument("--project", required=True)
    s.add_argument("--activate", metavar="RUN")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("restore", help="replace a damaged project.sqlite by its latest backup")
    s.add_argument("--project", required=True)
    s.add_argument("--backup", help="backup file to restore (default: the newest in backups/)")
    s.add_argument("--list", action="store_true", help="list the backups and stop")

    s = sub.add_parser("train",
                       help="train a model on a project (own process; --events for JSON lines)")
    s.add_argument("--project", required=True)
    s.add_argument("--model", default=None, help="mffpa (default), mixsup, an ablation variant, "
                   "anomaly (good parts only) or the box detectors relational / detector")
    s.add_argument("--preset", default=None,
                   choices=["quick", "thorough", "ksdd", "ksdd2", "dagm", "severstal"],
                   help="quick (minutes on a CPU; the default, as the app's Train button), "
                        "thorough (the papers' recipe at the data's scale) or a paper's "
                        "published settings (ksdd, ksdd2, dagm, severstal)")
    s.add_argument("--config", help="JSON file with TrainConfig fields")
    s.add_argument("--epochs", type=int)
    s.add_argument("--size", help="input size WxH (default: from the training images' median "
                                    "size, aspect kept, long side capped by the preset)")
    s.add_argument("--pixel-labels", type=int, dest="pixel_labels",
                   help="keep the masks of only N defective training images")
    s.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument("--seed", type=int)
    s.add_argument("--lr", type=float, help="learning rate")
    s.add_argument("--threads", type=int,
                   help="CPU threads for torch (1 is fastest on a busy machine)")
    s.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random flips / 90-degree turns of the training images")
    s.add_argument("--cpu-bf16", action=argparse.BooleanOptionalAction, default=None,
                   dest="cpu_bf16",
                   help="bfloat16 training forward pass on a CPU with native bf16 (the quick "
                        "preset's default; validation and inference stay float32)")
    s.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    s.add_argument("--run-id", dest="run_id", help="name of the new run (default: time stamp)")
    s.add_argument("--events", action="store_true", help="print one JSON object per line")
    s.add_argument("--no-estimate", action="store_true", dest="no_estimate",
                   help="skip the time estimate (a few timed steps) before training")
    s.add_argument("--estimate-only", action="store_true", dest="estimate_only",
                   help="time the steps afresh, print the estimated training time and stop "
                        "without training (the Train page's Estimate button; with --events "
                        "one JSON line)")
    s.add_argument("--cluster", metavar="ADDRESS",
                   help="train on the Ray cluster at HOST:PORT or ray://HOST:PORT "
                        "(docs/cluster.md); --resume RUN of such a run follows it again")
    s.add_argument("--attach", metavar="RUN",
                   help="follow RUN's cluster job again and bring its result home (never "
                        "trains; the app does this when it opens the project)")
    s.add_argument("--gpus", type=int, metavar="N",
                   help="train data-parallel on N GPUs (torch.distributed; with --device "
                        "cpu: N CPU processes)")

    s = sub.add_parser("sweep", help="how many masks do I need: one run per number of pixel "
                                     "masks, test AP of each (own process; --events)")
    s.add_argument("--project", required=True)
    s.add_argument("--pixel-labels", dest="pixel_labels_levels", default="0,25%,50%,all",
                   help="mask counts to compare: counts, shares and 'all' "
                        "(default 0,25%%,50%%,all)")
    s.add_argument("--model", default=None)
    s.add_argument("--preset", default="quick",
                   choices=["quick", "thorough", "ksdd", "ksdd2", "dagm", "severstal"])
    s.add_argument("--config", help="JSON file with TrainConfig fields")
    s.add_argument("--epochs", type=int)
    s.add_argument("--size", help="input size WxH (default: from the data)")
    s.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument("--seed", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--threads", type=int)
    s.add_argument("--sweep-id", dest="sweep_id", help="name of the sweep (default: time stamp)")
    s.add_argument("--resume", metavar="SWEEP_ID",
                   help="continue a cancelled or killed sweep: its tested levels are kept, "
                        "the others run with its own settings")
    s.add_argument("--events", action="store_true", help="print one JSON object per line")
    s.add_argument("--cluster", metavar="ADDRESS",
                   help="train the levels as parallel jobs on the Ray cluster at HOST:PORT")
    s.add_argument("--seeds", help="one run per level and seed, e.g. 0,1,2 (the plot shows "
                                   "the mean per level)")
    s.set_defaults(pixel_labels=None, augment=None)

    s = sub.add_parser("evaluate", help="image- and pixel-level metrics of a run on a split")
    s.add_argument("--project", required=True)
    s.add_argument("--run", help="run id (default: the active run, else the newest finished one)")
    s.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    s.add_argument("--json", action="store_true")


def _add_runtime_commands(sub: argparse._SubParsersAction, line: bool) -> None:
    """predict, model-info, (export-model,) watch: in the line runtime without what needs
    torch (predict --run, model-info of a variant, export-model)."""
    s = sub.add_parser("predict", help="score images with an export package: CSV + overlay "
                       "PNGs" if line else "score images with a trained run: CSV + overlay PNGs")
    if line:
        s.add_argument("--model", metavar="PACKAGE", required=True,
                       help="export package (made by export-model)")
        s.set_defaults(run=None, project=None)
    else:
        g = s.add_mutually_exclusive_group(required=True)
        g.add_argument("--run", help="run folder, or RUN with --project")
        g.add_argument("--model", metavar="PACKAGE", help="export package (torch-free runtime)")
        s.add_argument("--project", help="project folder (when --run is a run id)")
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    s.add_argument("--out", required=True)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--threshold", type=float, help="override the run's threshold")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "gpu", "mps"],
                   help="where to score: a run on torch's devices (gpu = cuda); a package on "
                   "ONNX Runtime's CUDA provider or OpenVINO's GPU (cuda/gpu), the CPU when "
                   "there is none (default auto: the GPU when there is one)")
    s.add_argument("--no-overlays", action="store_true")
    from defect_studio.deploy.cli import add_recheck_option

    add_recheck_option(s)
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    if not line:  # the line runtime ships no cluster code
        s.add_argument("--cluster", metavar="ADDRESS",
                       help="score on the Ray cluster at HOST:PORT (with --model PACKAGE)")

    s = sub.add_parser("model-info", help="what an export package holds and whether it runs "
                       "here" if line else "parameters and multiply-accumulates of a model "
                       "variant, or what an export package folder holds")
    s.add_argument("--model", default=None, required=line,
                   help="an export package folder" + ("" if line else
                                                     ", or a segmentation model variant or "
                                                     "'all' (default: mffpa)"))
    s.add_argument("--input", default="3x640x232", help="CxWxH (default 3x640x232; variants)")
    s.add_argument("--json", action="store_true")

    if not line:
        s = sub.add_parser("cluster-info", help="nodes, GPUs and free memory of a Ray cluster")
        s.add_argument("address", metavar="ADDRESS", help="HOST:PORT or ray://HOST:PORT")
        s.add_argument("--json", action="store_true")

    from defect_studio.deploy.cli import add_commands  # export-model, watch

    add_commands(sub, line=line)


def _version() -> str:
    from defect_studio import __version__

    return __version__


def handler_of(name: str, args: argparse.Namespace, line: bool = False) -> str:
    """The "module:function" that runs a parsed command."""
    if name == "model-info" and (line or _is_folder(getattr(args, "model", None))):
        return PACKAGE_INFO
    return HANDLERS[name]


def _is_folder(text: str | None) -> bool:
    import os

    return bool(text) and os.path.isdir(text)


def run_handler(name: str, args: argparse.Namespace, line: bool = False) -> int:
    module_name, func_name = handler_of(name, args, line).split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args) or 0)


def line_main(argv: list[str] | None = None) -> int:
    """The `defect-studio` of the line runtime (installer/runtime/): RUNTIME_COMMANDS only."""
    return main(argv, line=True)


def is_line_install() -> bool:
    """True in the line runtime (defect-studio-runtime), which ships no training code."""
    import importlib.util

    return importlib.util.find_spec("defect_studio.training") is None


def main(argv: list[str] | None = None, line: bool | None = None) -> int:
    """The command line; ``line`` None: the line runtime's commands when that is the install
    (``python -m defect_studio`` there)."""
    from defect_studio.threads import quiet_threads

    quiet_threads()  # before torch / onnxruntime load: idle threads sleep on a busy machine
    if line is None:
        line = is_line_install()
    parser = build_parser(line)
    args = parser.parse_args(argv)
    if line and args.command is None:
        parser.print_usage(sys.stderr)
        print("error: give a command: " + ", ".join(RUNTIME_COMMANDS) + " (the line runtime "
              "has no desktop app)", file=sys.stderr)
        return 2
    if args.command in (None, "gui"):
        from defect_studio.app.shell.main import (
            run_gui,  # lazy: the headless commands never load Qt
        )

        return run_gui(getattr(args, "project", None))
    from defect_studio import notices

    notices.listeners.append(_print_notice)  # e.g. orphan files moved aside on open
    try:
        return run_handler(args.command, args, line)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        return report_error(e, f"defect-studio {args.command}")
    finally:
        notices.listeners.remove(_print_notice)


def _print_notice(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


# what the full install has and the line runtime has not
_FULL_INSTALL = ("torch", "torchvision", "PySide6", "pyqtgraph", "sklearn", "scipy")


def _missing_from_line_runtime(module: str) -> bool:
    """Whether a missing module is one the line runtime leaves out on purpose (then one
    line, no crash log): the training stack, or in the runtime a module of the full install."""
    if module.split(".")[0] in _FULL_INSTALL:
        return True
    try:
        return module.startswith("defect_studio.") and is_line_install()
    except (ImportError, ValueError):
        return False


def report_error(e: BaseException, where: str) -> int:
    """Print one line for an error and return the exit code: 2 for what the user can fix
    (UserError, a file that cannot be written), 1 for a bug (its traceback is logged)."""
    import sqlite3

    from defect_studio.errors import UserError

    if isinstance(e, UserError):
        print(f"error: {e}", file=sys.stderr)
        return 2
    if isinstance(e, ModuleNotFoundError) and _missing_from_line_runtime(e.name or ""):
        if is_line_install():
            print(f"error: this needs {e.name}, which the line runtime (defect-studio-runtime) "
                  "does not have; install Defect Studio itself for training and the desktop "
                  "app", file=sys.stderr)
        else:
            print(f"error: {e.name} is not installed; install Defect Studio with its "
                  "dependencies again (make install)", file=sys.stderr)
        return 2
    if isinstance(e, OSError) and e.errno is not None:
        name = f" '{e.filename}'" if e.filename else ""
        print(f"error: cannot read or write{name}: {e.strerror or e}. Check the disk space "
              "and that the folder is writable", file=sys.stderr)
        return 2
    if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
        print(f"error: a project database is damaged ({e}); restore it with "
              "`defect-studio restore --project P`", file=sys.stderr)
        return 2
    from defect_studio.crashlog import crash_line, write_crash_log

    path = write_crash_log(type(e), e, e.__traceback__, where)
    print(f"error: {crash_line(e, path)}", file=sys.stderr)
    return 1

if __name__ == "__main__":
    sys.exit(main())
