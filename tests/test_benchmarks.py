"""The benchmark suite's own logic (make bench runs the goals themselves)."""

import re
from pathlib import Path

from benchmarks.attachments import Figures, Upload, p6_result
from benchmarks.common import spread
from benchmarks.run import GOALS, Result

PERFORMANCE = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"


def test_report_line_has_the_documented_form():
    result = Result("P9", "example", 0.5, ">=", 0.8, ["raw figure"])
    assert not result.passed
    assert result.report() == "P9 example: 0.50 (goal >= 0.8) FAIL\n    raw figure"
    assert Result("P9", "example", 1.2, "<=", 1.3).passed
    missed = Result("P9", "example", 1.2, "<=", 1.3, ["raw"], missed=["page memory"])
    assert not missed.passed
    assert missed.report().startswith("P9 example: 1.20 (goal <= 1.3) FAIL (missed: page memory)")


def test_every_documented_goal_is_there():
    assert list(GOALS) == ["P1", "P2", "P3", "P4", "P5", "P6"]


def test_performance_doc_describes_every_goal_and_lists_it_in_the_table():
    text = PERFORMANCE.read_text()
    for goal in GOALS:
        assert f"- **{goal} " in text, f"{goal} has no paragraph under Method"
        assert re.search(rf"^\| {goal} \|", text, re.MULTILINE), f"{goal} is not in the table"


def uploads(ms: float, page_mib: int, server_mib: int, count: int = 3) -> list[Upload]:
    return [Upload(ms, page_mib * 1024, server_mib * 1024) for _ in range(count)]


def figures(ms: float, page_mib: int, server_mib: int) -> Figures:
    return Figures(
        uploads(ms, page_mib, server_mib),
        uploads(ms / 2, page_mib, server_mib),
        uploads(ms, page_mib, server_mib),
    )


def test_p6_reports_the_time_ratio_and_passes_when_memory_stays_flat():
    small = figures(1_000, 200, 270)
    large = figures(10_000, 220, 275)  # encrypted 10 s against 5 s plain
    result = p6_result(small, large, Upload(100_000, 230, 280 * 1024), large)
    assert result.report().startswith("P6 attachment upload: 2.00 (goal <= 1.5) FAIL\n")
    assert "page peak memory (renderer VmHWM) sending 100 MiB: 220 MiB" in result.report()
    assert "(goal <= 1.2): PASS" in result.report()
    assert "(goal <= 1.1): PASS" in result.report()


def test_p6_fails_when_the_page_or_the_server_grows_with_the_file():
    small = figures(1_000, 200, 270)
    pages_grow = p6_result(small, figures(1_200, 300, 270), Upload(1, 1, 270 * 1024), small)
    assert pages_grow.report().startswith(
        "P6 attachment upload: 2.00 (goal <= 1.5) FAIL (missed: page memory)\n"
    )
    assert "ratio 1.50 (goal <= 1.2): FAIL" in pages_grow.report()
    server_grows = p6_result(small, figures(1_200, 200, 270), Upload(1, 1, 400 * 1024), small)
    assert server_grows.report().startswith(
        "P6 attachment upload: 2.00 (goal <= 1.5) FAIL (missed: server memory)\n"
    )
    assert "1 GiB: 400 MiB; largest / 10 MiB: 1.48 (goal <= 1.1): FAIL" in server_grows.report()


def test_spread_gives_the_median_and_the_range_of_the_rounds():
    assert spread([3.0, 1.0, 2.0], " s", 1) == "2.0 s (median of 3; 1.0 to 3.0)"
    assert spread([1042.4, 944.0, 1136.2], "/s") == "1042/s (median of 3; 944 to 1136)"
    assert spread([7.25], " MiB") == "7 MiB"
