"""CLI handlers of `defect-studio import` and `defect-studio export` (parser in core/cli.py)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from defect_studio.errors import CliError, UserError
from defect_studio.progress import progress_bar


def format_report(report, elapsed: float) -> str:
    """The import summary a person reads: counts, labels, skipped files by reason."""
    lines = [f"format      {report.format}",
             f"imported    {report.imported} images ({report.masks} with masks, "
             f"{report.boxes} boxes) in {elapsed:.1f} s"]
    labels = ", ".join(f"{k} {v}" for k, v in sorted(report.by_label.items()))
    lines.append(f"labels      {labels or '-'}")
    lines.append(f"duplicates  {report.duplicates}")
    lines.append(f"skipped     {len(report.skipped)}")
    for reason, n in sorted(report.skipped_by_reason().items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n:6d}  {reason}")
    for f, r in report.skipped[:5]:
        lines.append(f"          e.g. {f}: {r}")
    if len(report.skipped) > 5:
        lines.append("          (the full list: --report FILE or --json)")
    return "\n".join(lines)


def _remove_if_empty(root: Path) -> None:
    """Delete a project folder this command created when it holds no image."""
    from defect_studio.project.store import Project

    try:
        with Project.open(root, readonly=True) as project:
            if project.counts()["images"]:
                return
    except UserError:
        pass  # not even a project: only what create() started writing is there
    shutil.rmtree(root, ignore_errors=True)


def cmd_import(args: argparse.Namespace) -> int:
    """`defect-studio import SRC --project DIR`: 0 when anything was imported (or was
    already there), 1 when nothing could be imported, 2 on a user error."""
    from defect_studio.io.importers import detect_format, import_dataset
    from defect_studio.project.store import Project

    started = time.monotonic()
    fmt = detect_format(args.source) if args.format == "auto" else args.format
    root = Path(args.project).expanduser()
    new_folder = not root.exists()
    from defect_studio.io.importers.runner import ImportStopped

    stopped: ImportStopped | None = None
    try:
        with Project.open_or_create(root) as project:
            try:
                report = import_dataset(args.source, project, fmt=fmt, copy=args.copy,
                                        progress=progress_bar("importing"),
                                        allow_outside=getattr(args, "allow_outside", False))
            except ImportStopped as e:  # part was saved: report it truthfully below
                stopped, report = e, e.report
            counts = project.counts()
    except UserError:
        # a failed import must not leave an empty project folder behind
        if new_folder:
            _remove_if_empty(root)
        raise
    elapsed = time.monotonic() - started
    if args.report:
        try:
            report.write_csv(args.report)
        except OSError as e:
            raise CliError(
                f"cannot write the report to '{args.report}': {e.strerror or e}") from None
    if args.json:
        out = report.to_dict()
        out["elapsed_s"] = round(elapsed, 2)
        out["project"] = counts
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(format_report(report, elapsed))
        print(f"project     {counts['images']} images: {counts['ok']} ok, "
              f"{counts['defective']} defective, {counts['unlabeled']} unlabeled")
    if stopped is not None:
        print(f"error: {stopped}", file=sys.stderr)
        return 1
    if report.imported == 0 and report.duplicates == 0:
        if new_folder:
            _remove_if_empty(root)
        print("error: nothing could be imported (see the skipped files above)", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`defect-studio export --project DIR --format masks|coco --out DIR`."""
    from defect_studio.io.exporters import export_project
    from defect_studio.project.store import Project

    # read-only: exporting works while the app has the project open
    with Project.open(args.project, readonly=True) as project:
        result = export_project(project, args.format, args.out)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
