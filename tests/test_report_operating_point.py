"""defect_studio.evaluation.operating_point and defect_studio.evaluation.report without Qt:
hostile input."""

import math

import numpy as np
import pytest

from defect_studio.errors import DataError, ProjectError
from defect_studio.evaluation.operating_point import cell_members, threshold_for_escape_rate


def test_escape_rate_threshold():
    y = [1, 1, 1, 1, 0, 0, 0]
    s = [0.9, 0.8, 0.3, 0.6, 0.1, 0.7, 0.2]
    op = threshold_for_escape_rate(y, s, 0.0)
    assert op["threshold"] == pytest.approx(0.3) and op["escapes"] == 0
    op = threshold_for_escape_rate(y, s, 0.25)  # one of four may escape
    assert op["threshold"] == pytest.approx(0.6) and op["escapes"] == 1
    op = threshold_for_escape_rate(y, s, 1.0)
    assert op["escapes"] == 4 and op["threshold"] > 0.9
    for bad in (float("nan"), -0.1, 1.5, "x", None, float("inf")):
        with pytest.raises(DataError):
            threshold_for_escape_rate(y, s, bad)
    with pytest.raises(DataError, match="no defective"):
        threshold_for_escape_rate([0, 0], [0.1, 0.2], 0.1)
    with pytest.raises(DataError, match="NaN"):
        threshold_for_escape_rate([1, 0], [math.nan, 0.2], 0.1)
    with pytest.raises(DataError):
        threshold_for_escape_rate([1, 0, 1], [0.1, 0.2], 0.1)


def test_cell_members_worst_first():
    y = np.array([1, 1, 0, 0, 1])
    s = np.array([0.2, 0.1, 0.9, 0.6, 0.8])
    assert cell_members(y, s, 0.5, "fn") == [1, 0]
    assert cell_members(y, s, 0.5, "fp") == [2, 3]
    assert cell_members(y, s, 0.5, "tp") == [4]
    with pytest.raises(DataError):
        cell_members(y, s, 0.5, "xx")


def test_report_refuses_unevaluated_run_bad_threshold_and_bad_ids(tmp_path, demo_project_dir):
    from defect_studio.evaluation.report import build_report
    from defect_studio.project import Project

    with Project.open(demo_project_dir) as p:
        (p.runs_dir / "r1").mkdir()
        with pytest.raises(DataError, match="not been evaluated"):
            build_report(p, "r1", tmp_path / "a.html")
        (p.runs_dir / "r1" / "scores.csv").write_text(
            "image_id,path,label,score,decision,split\n"
            f"{p.images()[0].id},x/{p.images()[0].name},defective,0.9,NG,test\n"
            "999999,../../etc/passwd,ok,nan,OK,test\n"
            "abc,<script>.png,ok,0.1,OK,test\n")
        for bad in (float("nan"), -1, 2, "high"):
            with pytest.raises(DataError):
                build_report(p, "r1", tmp_path / "b.html", threshold=bad)
        with pytest.raises(ProjectError):
            build_report(p, "../r1", tmp_path / "c.html")
        out = build_report(p, "r1", tmp_path / "d.txt", threshold=0.95)
        assert out.suffix == ".html"
        assert "passwd" not in out.read_text()  # the NaN row is left out
        assert (tmp_path / "d_files" / f"fn_{p.images()[0].id}.png").is_file()
        text = build_report(p, "r1", tmp_path / "e.html", threshold=0.05).read_text()
        assert "<script>" not in text and "&lt;script&gt;.png" in text  # a false alarm
