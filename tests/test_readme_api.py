"""The README's Python API example runs as it stands (in a temporary folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_example_runs(tmp_path):
    code = readme_example()
    assert "from defect_studio import" in code
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ap = float(re.search(r"test AP (\d\.\d+)", r.stdout).group(1))
    assert 0.0 <= ap <= 1.0
    assert re.search(r"score 0\.\d{3} (OK|NG) \(64, 64\)", r.stdout), r.stdout
    assert (tmp_path / "demo-package" / "package.json").is_file()
    assert (tmp_path / "demo-project" / "project.sqlite").is_file()


def test_public_api_names_and_version():
    import defect_studio

    for name in ("Project", "train", "evaluate", "load_predictor", "export_model"):
        assert name in defect_studio.__all__
        assert callable(getattr(defect_studio, name))
    assert re.fullmatch(r"\d+\.\d+\.\d+", defect_studio.__version__)
    r = subprocess.run([sys.executable, "-m", "defect_studio", "--version"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and defect_studio.__version__ in r.stdout


def test_importing_the_package_stays_light():
    """`import defect_studio` (and the line runtime) pull in neither torch nor Qt."""
    code = ("import sys, defect_studio, defect_studio.deploy.runtime, "
            "defect_studio.deploy.package as p; "
            "p.runtime_kinds(); "
            "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
