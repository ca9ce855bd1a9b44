"""The `defect-studio` command line.

No sub-command starts the GUI; every sub-command runs headless. This module only
builds the argument parser: each command's work lives in the module that owns it
(imported lazily, so `defect-studio info` does not pay for importing torch).
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
}


def build_parser() -> argparse.ArgumentParser:
    from defect_studio.io.importers import IMPORT_FORMATS  # the formats live with the importers

    p = argparse.ArgumentParser(
        prog="defect-studio",
        description="Defect Studio: label, train and review surface-defect models. "
        "Without a command, the desktop app starts.",
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("gui", help="start the desktop app (the default)")
    s.add_argument("--project", help="project folder to open")

    s = sub.add_parser("demo", help="generate the demo project (textured surfaces with defects)")
    s.add_argument("--project", required=True, help="folder of the new project")
    s.add_argument("--count", type=int, default=540, help="number of images (default 540)")
    s.add_argument("--size", default="256x256", help="image size WxH (default 256x256)")
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
                   help="quick (minutes on a CPU), thorough (the papers' recipe at the data's "
                        "scale) or a paper's published settings (ksdd, ksdd2, dagm, severstal)")
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
    s.add_argument("--events", action="store_true", help="print one JSON object per line")
    s.set_defaults(pixel_labels=None, augment=None)

    s = sub.add_parser("evaluate", help="image- and pixel-level metrics of a run on a split")
    s.add_argument("--project", required=True)
    s.add_argument("--run", help="run id (default: the active run, else the newest finished one)")
    s.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("predict", help="score images with a trained run: CSV + overlay PNGs")
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
    s.add_argument("--json", action="store_true", help="print the results as JSON")

    s = sub.add_parser("model-info", help="parameters and multiply-accumulates of a model variant")
    s.add_argument("--model", default=None, help="a segmentation model variant or 'all' "
                                                  "(default: mffpa)")
    s.add_argument("--input", default="3x640x232", help="CxWxH (default 3x640x232)")
    s.add_argument("--json", action="store_true")

    from defect_studio.deploy.cli import add_commands  # export-model, watch

    add_commands(sub)
    return p


def _version() -> str:
    from defect_studio import __version__

    return __version__


def run_handler(name: str, args: argparse.Namespace) -> int:
    module_name, func_name = HANDLERS[name].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "gui"):
        from defect_studio.app.shell.main import (
            run_gui,  # lazy: the headless commands never load Qt
        )

        return run_gui(getattr(args, "project", None))
    from defect_studio import notices

    notices.listeners.append(_print_notice)  # e.g. orphan files moved aside on open
    try:
        return run_handler(args.command, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        return report_error(e, f"defect-studio {args.command}")
    finally:
        notices.listeners.remove(_print_notice)


def _print_notice(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def report_error(e: BaseException, where: str) -> int:
    """Print one line for an error and return the exit code: 2 for what the user can fix
    (UserError, a file that cannot be written), 1 for a bug (its traceback is logged)."""
    import sqlite3

    from defect_studio.errors import UserError

    if isinstance(e, UserError):
        print(f"error: {e}", file=sys.stderr)
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
