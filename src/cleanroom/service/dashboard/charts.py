"""Geometry of the dashboard's charts, drawn by the templates as inline SVG.

Only numbers are computed here (coordinates, widths, tick labels); the markup is in
``templates/charts.html``. Charts are in a fixed ``viewBox`` and scale with the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Bar", "LineChart", "StackedBar", "bars", "line_chart", "stacked_bars"]

WIDTH = 640
HEIGHT = 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 12, 28


@dataclass(frozen=True)
class LineChart:
    """A step line over time: its path, the points drawn, and the axes' labels."""

    width: int
    height: int
    path: str
    points: tuple[tuple[float, float], ...]
    y_ticks: tuple[tuple[float, str], ...]
    x_labels: tuple[tuple[float, str], ...]
    plot: tuple[int, int, int, int]  # left, top, right, bottom


def line_chart(samples: Sequence[tuple[float, int]]) -> LineChart | None:
    """A step chart of ``(unix time, value)`` samples (oldest first); ``None`` if empty.

    A value holds until the next sample, so the line steps rather than slopes.
    """
    if not samples:
        return None
    left, top, right, bottom = _LEFT, _TOP, WIDTH - _RIGHT, HEIGHT - _BOTTOM
    t0, t1 = samples[0][0], samples[-1][0]
    if t1 <= t0:
        t0, t1 = t0 - 3600, t0
    top_value = _nice_ceiling(max(value for _, value in samples))

    def x(t: float) -> float:
        return round(left + (t - t0) / (t1 - t0) * (right - left), 1)

    def y(value: float) -> float:
        return round(bottom - value / top_value * (bottom - top), 1)

    points = tuple((x(t), y(v)) for t, v in samples)
    path = _step_path(points)
    ticks = tuple((y(top_value * k / 4), f"{round(top_value * k / 4):,}") for k in range(5))
    labels = ((float(left), _date(t0)), (float(right), _date(t1)))
    return LineChart(WIDTH, HEIGHT, path, points, ticks, labels, (left, top, right, bottom))


def _step_path(points: Sequence[tuple[float, float]]) -> str:
    parts = [f"M{points[0][0]},{points[0][1]}"]
    for nx, ny in points[1:]:
        parts.append(f"H{nx}V{ny}")
    return "".join(parts)


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a label, its value, its length as a share of the longest (0..1)."""

    label: str
    value: float
    share: float
    note: str = ""


def bars(items: Sequence[tuple[str, float]], *, scale: float | None = None) -> list[Bar]:
    """Horizontal bars, scaled to ``scale`` (default: the largest value)."""
    top = scale if scale is not None else max((value for _, value in items), default=0)
    return [Bar(label, value, 0.0 if top <= 0 else min(1.0, value / top)) for label, value in items]


@dataclass(frozen=True)
class StackedBar:
    """One bar cut into parts: ``(part name, value, start share, width share)``."""

    label: str
    total: int
    parts: tuple[tuple[str, int, float, float], ...]


def stacked_bars(
    rows: Sequence[tuple[str, dict[str, int]]], order: Sequence[str]
) -> list[StackedBar]:
    """Stacked horizontal bars over a common scale (the largest total), parts in ``order``."""
    top = max((sum(parts.values()) for _, parts in rows), default=0)
    result = []
    for label, parts in rows:
        start, cut = 0.0, []
        for name in order:
            value = parts.get(name, 0)
            if value:
                width = value / top
                cut.append((name, value, start, width))
                start += width
        result.append(StackedBar(label, sum(parts.values()), tuple(cut)))
    return result


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (min 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)


def _date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")
