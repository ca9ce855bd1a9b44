"""The line runtime (installer/runtime/: the `defect-studio-runtime` distribution, no torch, no Qt).

- installer/runtime/modules.txt is exactly the import closure of the runtime's commands
  (every module
  they import ships, nothing else does), and no shipped file imports torch, Qt or anything
  the runtime does not declare (the import graph of scripts/import_contracts.py, lazy
  imports included);
- installer/runtime/stage.py copies exactly those modules; its pyproject agrees with the list;
- the staged tree runs `--version`, `model-info --model` and `predict --model` in a
  Python that sees only it and the runtime's dependencies (torch and Qt blocked), on a
  small hand-made ONNX package.

CI (.ci/run) builds the real venv (`make line-runtime`) and runs predict and watch there.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "installer" / "runtime"))

import import_contracts  # noqa: E402
import stage as line_stage  # noqa: E402

# Imports in the shipped modules that the runtime's commands never execute: each one sits
# inside a function (checked below) on a path the line parser does not offer.
NOT_TAKEN = {
    ("defect_studio.cli", "defect_studio.app.shell.main"): "no desktop app in the runtime",
    ("defect_studio.cli", "defect_studio.io.importers"): "the full parser only",
    ("defect_studio.deploy", "defect_studio.deploy.export"): "export_model: needs torch",
    ("defect_studio.deploy.cli", "defect_studio.deploy.export"): "export-model command",
    ("defect_studio.deploy.cli", "defect_studio.inference.predictor"): "export-model --run",
    ("defect_studio.inference", "defect_studio.inference.predictor"): "a run's predictor",
    ("defect_studio.inference", "defect_studio.kinds"): "a run's predictor",
    ("defect_studio.inference.cli", "defect_studio.inference.predictor"): "predict --run",
    ("defect_studio.inference.cli", "defect_studio.inference.heat_range"): "predict --run's "
    "overlays: the run's heat range",
    ("defect_studio.inference.cli", "defect_studio.project"): "predict --run: the run's project",
    ("defect_studio.inference.cli", "defect_studio.cluster.predict"): "predict --cluster: the "
    "line parser has no --cluster",
}
# import name -> the requirement of installer/runtime/pyproject.toml that provides it
PROVIDED_BY = {"numpy": "numpy", "cv2": "opencv-python-headless", "onnxruntime": "onnxruntime",
               "openvino": "openvino", "watchdog": "watchdog", "platformdirs": "platformdirs",
               "tqdm": "tqdm"}
NEVER = ("torch", "torchvision", "PySide6", "pyqtgraph", "sklearn", "scipy", "torchmetrics")


@pytest.fixture(scope="module")
def graph():
    return import_contracts.build_graph()


def _requirement_name(req: str) -> str:
    return req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0] \
        .split("!")[0].split("~")[0].strip().lower()


def _roots() -> list[str]:
    import argparse

    from defect_studio.cli import RUNTIME_COMMANDS, handler_of
    from defect_studio.kinds import KIND_MODULES

    handlers = [handler_of(c, argparse.Namespace(model=None), line=True)
                for c in RUNTIME_COMMANDS]
    # the kind declarations are imported by name (importlib) by the registry
    return ["defect_studio.cli", "defect_studio.__main__", *(h.split(":")[0] for h in handlers),
            *KIND_MODULES]


def _closure(graph, roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if "." in m and m.startswith("defect_studio"):
            todo.append(m.rpartition(".")[0])  # importing a module runs its packages
        todo.extend(t for t in graph.find_modules_directly_imported_by(m)
                    if (m, t) not in NOT_TAKEN)
    return seen


def test_modules_txt_is_the_closure_of_the_runtime_commands(graph):
    closure = _closure(graph, _roots())
    ours = {m for m in closure if m.startswith("defect_studio")}
    listed = set(line_stage.runtime_modules())
    assert listed == ours, (f"installer/runtime/modules.txt lacks {sorted(ours - listed)} and has "
                            f"{sorted(listed - ours)} that the runtime never imports")
    externals = {m for m in closure if not m.startswith("defect_studio")}
    assert not externals & set(NEVER), sorted(externals & set(NEVER))
    third_party = externals - set(sys.stdlib_module_names)
    assert third_party <= set(PROVIDED_BY), sorted(third_party - set(PROVIDED_BY))


def test_no_shipped_file_imports_torch_or_qt_even_lazily(graph):
    for module in line_stage.runtime_modules():
        imported = set(graph.find_modules_directly_imported_by(module))
        assert not imported & set(NEVER), (module, sorted(imported & set(NEVER)))
        # a shipped module's import of an unshipped one is only on a path the runtime
        # does not take (NOT_TAKEN), never at module level
        missing = {t for t in imported if t.startswith("defect_studio")} \
            - set(line_stage.runtime_modules())
        assert {(module, t) for t in missing} <= set(NOT_TAKEN), (module, sorted(missing))


@pytest.mark.parametrize("edge", sorted(NOT_TAKEN))
def test_not_taken_imports_are_inside_functions(graph, edge):
    importer, imported = edge
    details = graph.get_import_details(importer=importer, imported=imported)
    assert details, f"{importer} no longer imports {imported}: drop it from NOT_TAKEN"
    tree = ast.parse(line_stage.module_file(importer).read_text(encoding="utf-8"))
    in_functions = {n.lineno for f in ast.walk(tree)
                    if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for d in details:
        assert d["line_number"] in in_functions, (importer, d)


def test_line_pyproject_matches_the_modules():
    cfg = tomllib.loads((REPO / "installer" / "runtime" / "pyproject.toml")
                        .read_text(encoding="utf-8"))
    packages = {m for m in line_stage.runtime_modules()
                if line_stage.module_file(m).name == "__init__.py"}
    assert set(cfg["tool"]["setuptools"]["packages"]) == packages
    assert cfg["project"]["scripts"] == {"defect-studio": "defect_studio.cli:line_main"}
    deps = {_requirement_name(r) for r in cfg["project"]["dependencies"]}
    optional = {_requirement_name(r) for extra in cfg["project"]["optional-dependencies"].values()
                for r in extra}
    assert deps | optional == set(PROVIDED_BY.values())
    assert "openvino" in optional and "openvino" not in deps
    main = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert cfg["project"]["requires-python"] == main["project"]["requires-python"]
    assert not {_requirement_name(r) for r in cfg["project"]["dependencies"]} & {
        "torch", "torchvision", "pyside6-essentials", "pyqtgraph"}


def test_stage_copies_exactly_the_listed_modules_and_refuses_bad_targets(tmp_path):
    out = tmp_path / "stage"
    (out / "defect_studio" / "training").mkdir(parents=True)  # an earlier, stale content
    (out / "defect_studio" / "training" / "__init__.py").write_text("import torch\n")
    (out / line_stage.MARKER).write_text("staged before\n")
    files = line_stage.stage(out)
    got = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert got == {p.relative_to(out).as_posix() for p in files}
    assert "defect_studio/training/__init__.py" not in got
    assert {"pyproject.toml", "README.md", "defect_studio/cli.py",
            "defect_studio/deploy/runtime.py", "defect_studio/kinds/segdec/kind.py"} <= got
    assert (out / "defect_studio" / "deploy" / "watch.py").read_bytes() == \
        (REPO / "core" / "deploy" / "watch.py").read_bytes()
    for bad in (REPO, REPO.parent, REPO / "installer" / "runtime" / "..", REPO / "core"):
        with pytest.raises(SystemExit, match="overwrite the repository"):
            line_stage.stage(bad)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not staged by stage.py"):
        line_stage.stage(precious)
    assert (precious / "keep.txt").read_text() == "mine"
    line_stage.stage(out)  # a folder it staged before is replaced
    for name in ("defect_studio.nope", "torch", "defect_studio.../etc"):
        with pytest.raises(SystemExit, match="stage.py"):
            line_stage.module_file(name)


def test_line_parser_offers_only_the_runtime_commands(capsys, tmp_path):
    from defect_studio.cli import RUNTIME_COMMANDS, build_parser, line_main

    parser = build_parser(line=True)
    sub = next(a for a in parser._actions if a.dest == "command")
    assert tuple(sub.choices) == RUNTIME_COMMANDS
    for argv in (["train", "--project", "P"], ["predict", "--run", "r", "--out", "o", "x"],
                 ["export-model", "--run", "r", "--out", "o"], ["gui"]):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        assert e.value.code == 2
    assert line_main([]) == 2
    assert "give a command: predict, model-info, watch" in capsys.readouterr().err
    # model-info takes a package folder; a variant name, a file, a folder without a package
    (tmp_path / "file").write_text("x")
    for model in ("mffpa", str(tmp_path / "file"), str(tmp_path), "../" * 12 + "etc"):
        assert line_main(["model-info", "--model", model]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err


def test_model_info_of_a_damaged_package_is_one_line(capsys, tmp_path):
    from defect_studio.cli import line_main, main

    good = _tiny_package(tmp_path / "good")
    assert main(["model-info", "--model", str(good), "--json"]) == 0  # the full install too
    assert json.loads(capsys.readouterr().out)["threshold"] == 0.6
    changed = _tiny_package(tmp_path / "changed")
    with open(changed / "model.onnx", "ab") as f:
        f.write(b"\0")
    nan = _tiny_package(tmp_path / "nan")
    manifest = json.loads((nan / "package.json").read_text())
    (nan / "package.json").write_text(json.dumps({**manifest, "threshold": float("nan")}))
    odd = tmp_path / "odd"
    (odd / "package.json").mkdir(parents=True)  # a folder where the manifest should be
    for folder, why in ((changed, "checksum"), (nan, "threshold"), (odd, "not an export")):
        assert line_main(["model-info", "--model", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err, err


def test_a_missing_full_install_module_is_one_line(capsys, monkeypatch):
    from defect_studio import cli

    e = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert cli.report_error(e, "defect-studio x") == 2  # here: the full install lacks it
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "torch is not installed" in err
    monkeypatch.setattr(cli, "is_line_install", lambda: True)
    for name in ("torch", "defect_studio.training.cli"):
        e = ModuleNotFoundError(f"No module named {name!r}", name=name)
        assert cli.report_error(e, "defect-studio x") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and name in err and "line runtime" in err
    monkeypatch.setattr(cli, "is_line_install", lambda: False)
    e = ModuleNotFoundError("No module named 'defect_studio.nope'", name="defect_studio.nope")
    monkeypatch.setattr("defect_studio.crashlog.write_crash_log", lambda *a: None)
    assert cli.report_error(e, "defect-studio x") == 1  # a missing module of ours: a bug
    assert "unexpected error" in capsys.readouterr().err


# -- the staged runtime, run in a Python that sees only it and its dependencies -------------

def _tiny_package(folder: Path, size: int = 32) -> Path:
    """An export package by hand: an ONNX graph with the runtime's input and outputs
    (heatmap = sigmoid of the channel mean, score = its maximum) and its package.json."""
    import onnx
    from onnx import TensorProto, helper

    from defect_studio.deploy.package import ONNX_OPSET, PACKAGE_FORMAT

    axes1 = helper.make_tensor("axes1", TensorProto.INT64, [1], [1])
    axes12 = helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2])
    nodes = [helper.make_node("ReduceMean", ["image", "axes1"], ["m"], keepdims=0),
             helper.make_node("Sigmoid", ["m"], ["heatmap"]),
             helper.make_node("ReduceMax", ["heatmap", "axes12"], ["score"], keepdims=0)]
    g = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, size, size])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["n", size, size])],
        initializer=[axes1, axes12])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    folder.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    manifest = {"package_format": PACKAGE_FORMAT, "kind": "segdec", "format": "onnx",
                "model": "tiny", "run_id": "tiny-run", "threshold": 0.6,
                "threshold_source": "test", "files": {"model.onnx": digest},
                "preprocess": {"input_size": [size, size], "resize": "resize", "channels": 3}}
    (folder / "package.json").write_text(json.dumps(manifest))
    return folder


def test_staged_runtime_runs_without_the_full_install(tmp_path):
    import cv2
    import onnxruntime

    stage_dir = tmp_path / "stage"
    line_stage.stage(stage_dir)
    pkg = _tiny_package(tmp_path / "pkg")
    images = tmp_path / "images"
    images.mkdir()
    for i, v in enumerate((20, 235)):  # dark -> score sigmoid(~0.08) < 0.6; bright -> > 0.6
        cv2.imwrite(str(images / f"part_{i}.png"), np.full((40, 48, 3), v, np.uint8))
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    # the third-party packages the runtime declares, from wherever this venv has them; no
    # site processing, so neither the editable defect_studio nor any .pth is seen
    deps = sorted({str(Path(m.__file__).resolve().parents[1])
                   for m in (np, cv2, onnxruntime, __import__("tqdm"),
                             __import__("watchdog"), __import__("platformdirs"))})
    script = (
        "import sys, json\n"
        f"sys.path[:0] = [{str(stage_dir)!r}, *{deps!r}]\n"
        f"for m in {NEVER!r}: sys.modules[m] = None\n"
        "from defect_studio.cli import line_main, main\n"
        "assert main([]) == 2\n"  # python -m defect_studio: the line's commands by itself
        "try:\n    line_main(['--version'])\nexcept SystemExit as e:\n    assert not e.code\n"
        "assert line_main(['model-info', '--model', sys.argv[1], '--json']) == 0\n"
        "assert line_main(['predict', '--model', sys.argv[1], '--out', sys.argv[3],"
        " sys.argv[2]]) == 0\n"
        "import defect_studio.deploy.watch, watchdog.observers\n"  # watch's own imports
        "mods = [m for m in sys.modules if m.startswith('defect_studio')]\n"
        "outside = [m for m in mods if not sys.modules[m].__file__.startswith(sys.path[0])]\n"
        "print(json.dumps({'outside': outside, 'modules': mods}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    res = subprocess.run([sys.executable, "-S", "-c", script, str(pkg), str(images),
                          str(tmp_path / "out")], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    from defect_studio import __version__

    assert lines[0] == __version__
    info = json.loads("\n".join(lines[1:lines.index("}") + 1]))
    assert info["run_id"] == "tiny-run" and info["backend"] == "onnxruntime"
    assert info["input"] == {"width": 32, "height": 32, "channels": 3, "resize": "resize"}
    loaded = json.loads(lines[-1])
    assert loaded["outside"] == [] and "defect_studio.deploy.watch" in loaded["modules"]
    assert not any(m.startswith(("defect_studio.training", "defect_studio.app"))
                   for m in loaded["modules"])
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    by_name = {Path(r.split(",")[0]).name: r.split(",") for r in rows[1:]}
    assert by_name["part_0.png"][2] == "OK" and by_name["part_1.png"][2] == "NG"
    assert by_name["broken.png"][3]  # the unreadable file: an error row, the batch went on
    assert "could not score" in res.stderr and "Traceback" not in res.stderr
    assert "give a command: predict, model-info, watch" in res.stderr
    assert (tmp_path / "out" / "part_1_overlay.png").is_file()


def test_full_cli_runtime_commands_need_no_torch_or_qt(tmp_path):
    """The full install's CLI: --version, model-info --model PACKAGE, predict --model and the
    watch command's modules with torch, Qt, scikit-learn and scipy unimportable."""
    import cv2

    pkg = _tiny_package(tmp_path / "pkg")
    cv2.imwrite(str(tmp_path / "part.png"), np.full((32, 32, 3), 200, np.uint8))
    script = (
        "import sys\n"
        f"for m in {NEVER!r}: sys.modules[m] = None\n"
        "from defect_studio.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert not e.code\n"
        "assert main(['model-info', '--model', sys.argv[1]]) == 0\n"
        "assert main(['predict', '--model', sys.argv[1], '--out', 'out', 'part.png']) == 0\n"
        "import defect_studio.deploy.cli, defect_studio.deploy.watch, watchdog.observers\n"
        f"print([m for m in {NEVER!r} if sys.modules.get(m) is not None])\n"
    )
    res = subprocess.run([sys.executable, "-c", script, str(pkg)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"
    assert "runs here with onnxruntime" in res.stdout
    assert "1 image(s) scored with run tiny-run" in res.stdout


def test_progress_and_crash_logs_without_tqdm_and_platformdirs(monkeypatch):
    import io

    from defect_studio import crashlog, progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` raises ImportError
    out = Tty()
    bar = progress.progress_bar("scoring", out)
    for i in range(1, 4):
        bar(i, 3)
    assert out.getvalue().splitlines()[-1] == "scoring 3/3"
    monkeypatch.setitem(sys.modules, "platformdirs", None)
    monkeypatch.delenv("DEFECT_STUDIO_LOG_DIR", raising=False)
    assert crashlog.log_dir() == Path.home() / ".defect-studio" / "logs"
