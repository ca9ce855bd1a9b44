"""Lay out the source tree of the line runtime (defect-studio-runtime) for pip to build.

    python3 installer/runtime/stage.py OUT   # OUT: new, or staged before (build/line-runtime)

Copies installer/runtime/pyproject.toml, installer/runtime/README.md and the modules named
in installer/runtime/modules.txt (from
core/, the folder of `defect_studio`, see the main pyproject.toml) into OUT, and nothing
else; `pip install OUT` then installs the runtime. Standard library only: it runs from a
fresh clone before any environment exists.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

LINE = Path(__file__).resolve().parent
REPO = LINE.parents[1]
PACKAGE_DIRS = {"defect_studio": "core"}  # the runtime holds only modules of core/


def runtime_modules(listing: Path = LINE / "modules.txt") -> list[str]:
    """The module names of modules.txt (comments and blank lines skipped)."""
    names = []
    for raw in listing.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


MARKER = ".defect-studio-stage"


def module_file(name: str, repo: Path = REPO) -> Path:
    """The source file of module ``name`` (a package: its __init__.py)."""
    top, _, rest = name.partition(".")
    if top not in PACKAGE_DIRS:
        raise SystemExit(f"stage.py: {name} is not a module of defect_studio (core/)")
    base = repo / PACKAGE_DIRS[top]
    parts = rest.split(".") if rest else []
    package = base.joinpath(*parts) / "__init__.py"
    if package.is_file():
        return package
    module = base.joinpath(*parts).with_suffix(".py") if parts else package
    if not module.is_file():
        raise SystemExit(f"stage.py: installer/runtime/modules.txt names {name}, which has no file")
    return module


def stage(out: Path, repo: Path = REPO) -> list[Path]:
    """Write the staged tree into ``out`` (its earlier content replaced); the files written."""
    out = out.resolve()
    if out == repo or repo.is_relative_to(out):
        raise SystemExit(f"stage.py: {out} would overwrite the repository; give a new folder")
    if out.is_relative_to(repo) and not out.is_relative_to(repo / "build"):
        raise SystemExit(f"stage.py: {out} would overwrite the repository's own files; "
                         "stage into build/ or a folder outside it")
    if out.exists():
        # only a folder this script staged before (its marker inside) or an empty one is
        # replaced: a wrong OUT never costs the user a folder
        if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file()):
            raise SystemExit(f"stage.py: {out} exists and was not staged by stage.py; "
                             "give a new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("staged by installer/runtime/stage.py\n", encoding="utf-8")
    written = [out / MARKER]
    for name in ("pyproject.toml", "README.md"):
        dest = out / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(LINE / name, dest)
        written.append(dest)
    for name in runtime_modules():
        src = module_file(name, repo)
        rel = src.relative_to(repo / PACKAGE_DIRS["defect_studio"])
        dest = out / "defect_studio" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        written.append(dest)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    files = stage(Path(argv[0]))
    print(f"stage.py: {len(files)} files in {Path(argv[0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
