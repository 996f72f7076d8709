"""Small SVG charts computed server-side: executions per time bucket and the success rate over them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec


class Bar(msgspec.Struct, frozen=True):
    x: float
    y: float
    height: float
    label: str
    count: int
    rate: float | None


class Chart(msgspec.Struct, frozen=True):
    width: int
    height: int
    bars: list[Bar]
    rate_points: str  # SVG polyline points of the success rate (0..100 %)
    max_count: int


def executions_chart(
    events: Iterable[tuple[str, bool]],
    *,
    hours: int,
    buckets: int = 24,
    now: datetime | None = None,
    width: int = 720,
    height: int = 140,
) -> Chart:
    """`events` are (ISO timestamp, succeeded); buckets split the last `hours` evenly."""
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=hours)
    span_s = (end - start).total_seconds() / buckets
    counts = [0] * buckets
    wins = [0] * buckets
    for stamp, ok in events:
        try:
            at = datetime.fromisoformat(stamp)
        except (TypeError, ValueError):
            continue
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        index = int((at - start).total_seconds() // span_s)
        if 0 <= index < buckets:
            counts[index] += 1
            wins[index] += int(ok)
    top = max(counts) or 1
    plot_h = height - 20
    slot = width / buckets
    bars, points = [], []
    for i, count in enumerate(counts):
        h = plot_h * count / top
        rate = wins[i] / count if count else None
        label = (start + timedelta(seconds=span_s * i)).strftime("%H:%M" if hours <= 48 else "%m-%d")
        bars.append(
            Bar(
                x=round(i * slot + 2, 1),
                y=round(plot_h - h, 1),
                height=round(h, 1),
                label=label,
                count=count,
                rate=rate,
            )
        )
        if rate is not None:
            points.append(f"{round(i * slot + slot / 2, 1)},{round(plot_h - plot_h * rate, 1)}")
    return Chart(width=width, height=height, bars=bars, rate_points=" ".join(points), max_count=max(counts))
