"""Fault matrix, "code health" rows found in the same review."""

from __future__ import annotations

import json

import pytest

from defect_studio.errors import UserError


def test_model_info_totals_unchanged_with_flop_counter(capsys):
    """FlopCounterMode gives the totals the hand-written hooks gave (golden figures)."""
    from defect_studio.cli import main

    # what the hooks counted at 3x640x232 (all four variants agree, totals and per-module
    # counts; checked once, see docs/reliability.md); mffpa has every kind of layer
    golden = {"mffpa": 33386879042}
    for name, macs in golden.items():
        assert main(["model-info", "--model", name, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        row = out[0] if isinstance(out, list) else out
        assert row["model"] == name and row["macs"] == macs


def test_outlook_weighted_sum_is_its_own_module_count():
    from defect_studio.kinds.segdec.blocks import OutlookAttention
    from defect_studio.kinds.segdec.complexity import count_macs

    att = OutlookAttention(32, heads=2, kernel=3)
    total, per = count_macs(att, (32, 6, 5), per_module=True)
    assert per[""] == 6 * 5 * 32 * 81 and per["v"] == 6 * 5 * 32 * 32
    assert total == sum(per.values())


def test_one_parse_size():
    from defect_studio.demo.cli import parse_size as demo_size
    from defect_studio.demo.generator import DemoSettingsError
    from defect_studio.training.config import TrainConfigError
    from defect_studio.training.config import parse_size as train_size
    from defect_studio.units import parse_size

    for text, want in (("64x48", (64, 48)), ("64×48", (64, 48)), ("64*48", (64, 48)),
                       ("32", (32, 32))):
        assert parse_size(text) == demo_size(text) == train_size(text) == want
    for bad in ("", "x", "64x", "-3x4", "1e9", "64x48x3", "nan"):
        with pytest.raises(UserError):
            parse_size(bad)
    with pytest.raises(DemoSettingsError):
        demo_size("abc")
    with pytest.raises(TrainConfigError):
        train_size("abc")


def test_cli_error_is_a_user_error():
    from defect_studio.cli import CliError as FromCli
    from defect_studio.errors import CliError

    assert FromCli is CliError and issubclass(CliError, UserError)


def test_import_report_to_unwritable_file_is_cli_error(tmp_path, capsys):
    from fault_helpers import png

    from defect_studio.cli import main

    src = tmp_path / "src" / "OK"
    src.mkdir(parents=True)
    png(src / "a.png")
    code = main(["import", str(tmp_path / "src"), "--project", str(tmp_path / "p"),
                 "--report", str(tmp_path / "no" / "such" / "dir" / "r.csv")])
    assert code == 2 and "cannot write the report" in capsys.readouterr().err


def test_evaluate_writes_csvs_per_split(trained_project):
    from defect_studio.evaluation import evaluate_run

    root = trained_project.root
    trained_project.close()
    run = root / "runs" / "tiny"
    (run / "scores_test.csv").write_text("an earlier test-split evaluation\n")
    val = evaluate_run(root, "tiny", "val")
    assert val["files"]["scores"].endswith("scores_val.csv")
    lines = (run / "scores_val.csv").read_text().splitlines()
    assert len(lines) == val["n"] + val["n_errors"] + 1
    assert all(line.endswith(",val") for line in lines[1:])
    # val no longer overwrites test; the unsuffixed file is the latest (for the app)
    assert (run / "scores_test.csv").read_text() == "an earlier test-split evaluation\n"
    assert (run / "scores.csv").read_text() == (run / "scores_val.csv").read_text()
    assert (run / "evaluation_val.json").is_file() and (run / "pr_curve_val.csv").is_file()


def test_docs_cite_only_files_that_exist():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    for path in [*repo.glob("docs/*.md"), *repo.glob("core/**/*.py"), repo / "README.md"]:
        if path.name == "reliability.md":  # the fault matrix names the finding itself
            continue
        text = path.read_text(encoding="utf-8")
        assert "model.safetensors" not in text, path
        assert "MODEL.md" not in text, path  # a design note outside the repository
