"""Chart geometry: scales, the step path, bar shares."""

from __future__ import annotations

from cleanroom.service.dashboard import charts


def test_a_step_chart_holds_each_value_until_the_next_sample() -> None:
    chart = charts.line_chart([(0, 100), (50, 40), (100, 40)])
    assert chart is not None
    (x0, y0), (x1, y1), (x2, y2) = chart.points
    assert x0 < x1 < x2 and y0 < y1 == y2  # higher values are drawn higher (smaller y)
    assert chart.path == f"M{x0},{y0}H{x1}V{y1}H{x2}V{y2}"
    assert chart.y_ticks[-1][1] == "100" and chart.y_ticks[0][1] == "0"


def test_one_sample_still_draws_and_none_draws_nothing() -> None:
    assert charts.line_chart([]) is None
    chart = charts.line_chart([(1_800_000_000, 7)])
    assert chart is not None and len(chart.points) == 1


def test_the_scale_ends_on_a_round_number() -> None:
    chart = charts.line_chart([(0, 1473), (1, 1475)])
    assert chart is not None and chart.y_ticks[-1][1] == "2,000"


def test_bars_share_one_scale_and_stacks_keep_their_order() -> None:
    assert [b.share for b in charts.bars([("a", 5), ("b", 10), ("c", 0)])] == [0.5, 1.0, 0.0]
    assert [b.share for b in charts.bars([("a", 0)])] == [0.0]
    (first, second) = charts.stacked_bars(
        [("acme", {"refused": 1, "completed": 3}), ("beta", {"completed": 2})],
        ("completed", "refused"),
    )
    assert first.total == 4 and [p[0] for p in first.parts] == ["completed", "refused"]
    assert first.parts[1][2] == 0.75 and second.parts[0][3] == 0.5
