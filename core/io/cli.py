"""CLI handlers of `defect-studio import` and `defect-studio export` (parser in core/cli.py)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from core.errors import UserError

# Without a terminal (logs, the GUI's process), a line every this many images.
PROGRESS_EVERY = 500


class _Progress:
    """A line counter on stderr: rewritten in place on a terminal, else every N images."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            now = time.monotonic()
            if done == total or now - self.last > 0.1:
                self.last = now
                end = "\n" if done == total else ""
                self.stream.write(f"\rimporting {done}/{total}{end}")
                self.stream.flush()
        elif done % PROGRESS_EVERY == 0 or done == total:
            self.stream.write(f"importing {done}/{total}\n")
            self.stream.flush()


def format_report(report, elapsed: float) -> str:
    """The import summary a person reads: counts, labels, skipped files by reason."""
    lines = [f"format      {report.format}",
             f"imported    {report.imported} images ({report.masks} with masks, {report.boxes} boxes) in "
             f"{elapsed:.1f} s"]
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
    from core.project.store import Project

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
    from core.io.importers import detect_format, import_dataset
    from core.project.store import Project

    started = time.monotonic()
    fmt = detect_format(args.source) if args.format == "auto" else args.format
    root = Path(args.project).expanduser()
    new_folder = not root.exists()
    try:
        with Project.open_or_create(root) as project:
            report = import_dataset(args.source, project, fmt=fmt, copy=args.copy,
                                    progress=_Progress())
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
            raise UserError(
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
    if report.imported == 0 and report.duplicates == 0:
        if new_folder:
            _remove_if_empty(root)
        print("error: nothing could be imported (see the skipped files above)", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`defect-studio export --project DIR --format masks|coco --out DIR`."""
    from core.io.exporters import export_project
    from core.project.store import Project

    # read-only: exporting works while the app has the project open
    with Project.open(args.project, readonly=True) as project:
        result = export_project(project, args.format, args.out)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
