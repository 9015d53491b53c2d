"""Server-rendered SVG bar charts: no script, no external assets, readable on a phone."""

from __future__ import annotations

from datetime import date, timedelta
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 600, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 16, 40


def last_days(today: date, days: int = 30) -> list[str]:
    """ISO dates of the ``days`` days ending today, oldest first."""
    return [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]


def human(n: float) -> str:
    """1234 -> 1.2k; keeps axis labels short."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:g}"


def bar_chart(title: str, days: list[str], values: dict[str, int], unit: str = "") -> Markup:
    """One bar per day (missing days are zero), with per-bar tooltips and a data table title."""
    peak = max([*values.values(), 0])
    scale_top = peak if peak > 0 else 1
    inner_w = WIDTH - LEFT - RIGHT
    inner_h = HEIGHT - TOP - BOTTOM
    step = inner_w / max(len(days), 1)
    bar_w = max(step * 0.7, 1.0)
    label = f"{title}, last {len(days)} days, peak {human(peak)}{unit}"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + inner_h}" x2="{WIDTH - RIGHT}" '
        f'y2="{TOP + inner_h}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 14}" text-anchor="end">{human(peak)}</text>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + inner_h}" text-anchor="end">0</text>',
    ]
    for i, day in enumerate(days):
        value = values.get(day, 0)
        h = inner_h * value / scale_top
        x = LEFT + i * step + (step - bar_w) / 2
        y = TOP + inner_h - h
        parts.append(
            f'<rect class="bar" data-day="{escape(day)}" data-value="{value}" x="{x:.1f}" '
            f'y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0):.1f}">'
            f"<title>{escape(day)}: {value:,}{escape(unit)}</title>"
            "</rect>"
        )
    if days:
        parts.append(
            f'<text class="tick" x="{LEFT}" y="{HEIGHT - 10}" text-anchor="start">'
            f"{escape(days[0])}</text>"
        )
        parts.append(
            f'<text class="tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 10}" text-anchor="end">'
            f"{escape(days[-1])}</text>"
        )
    parts.append("</svg>")
    # Every interpolated string above is escaped and the rest are numbers.
    return Markup("".join(parts))  # noqa: S704  # nosec B704
