"""The server-rendered usage chart."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

from api.dashboard.charts import bar_chart, human, last_days

NS = "{http://www.w3.org/2000/svg}"


def test_thirty_days_ending_today() -> None:
    days = last_days(date(2026, 3, 2))
    assert len(days) == 30 and days[-1] == "2026-03-02" and days[0] == "2026-02-01"


def test_bars_scale_to_the_peak_and_missing_days_are_zero() -> None:
    days = last_days(date(2026, 3, 2), 3)
    svg = ET.fromstring(str(bar_chart("Queries", days, {"2026-03-01": 50, "2026-03-02": 100})))
    bars = {r.get("data-day"): r for r in svg.iter(f"{NS}rect")}
    assert [b.get("data-value") for b in bars.values()] == ["0", "50", "100"]
    heights = [float(b.get("height") or 0) for b in bars.values()]
    assert heights[0] == 0 and abs(heights[2] - 2 * heights[1]) < 0.2
    assert "peak 100" in (svg.get("aria-label") or "")


def test_titles_are_escaped_and_empty_data_renders() -> None:
    svg = str(bar_chart("<script>x</script>", last_days(date(2026, 1, 1)), {}))
    assert "<script>" not in svg
    ET.fromstring(svg)  # well-formed


def test_human_numbers() -> None:
    assert human(950) == "950" and human(1234) == "1.2k" and human(3_500_000) == "3.5M"
