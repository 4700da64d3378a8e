"""The overview's chart: orders reaching each terminal state per minute, as stacked bars drawn in SVG.

Drawn on the server from `workers.operator.views.throughput`, so the page needs no charting script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 720, 140


@dataclass(frozen=True)
class Segment:
    status: str
    n: int
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    minute: str
    x: float
    width: float
    total: int
    segments: list[Segment]


def stacked_bars(per_minute: list[dict[str, Any]], statuses: tuple[str, ...]) -> tuple[list[Bar], int]:
    """One bar per minute (oldest on the left), each status a segment from the bottom up; and the tallest total."""
    tallest = max([sum(row[status] for status in statuses) for row in per_minute] + [1])
    slot = WIDTH / max(len(per_minute), 1)
    bars = []
    for i, row in enumerate(per_minute):
        segments, top = [], float(HEIGHT)
        for status in statuses:
            height = HEIGHT * row[status] / tallest
            top -= height
            if row[status]:
                segments.append(Segment(status, row[status], round(top, 2), round(height, 2)))
        total = sum(row[status] for status in statuses)
        bars.append(Bar(row["minute"], round(i * slot + 1, 2), round(max(slot - 2, 1), 2), total, segments))
    return bars, tallest
