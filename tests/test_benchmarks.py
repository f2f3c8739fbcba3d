"""The benchmark suite's own logic (make bench runs the goals themselves)."""

from benchmarks.run import GOALS, Result


def test_report_line_has_the_documented_form():
    result = Result("P9", "example", 0.5, ">=", 0.8, ["raw figure"])
    assert not result.passed
    assert result.report() == "P9 example: 0.50 (goal >= 0.8) FAIL\n    raw figure"
    assert Result("P9", "example", 1.2, "<=", 1.3).passed


def test_every_documented_goal_is_there():
    assert list(GOALS) == ["P1", "P2", "P3", "P4", "P5"]
