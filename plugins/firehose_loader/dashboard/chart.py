"""The chart: a stream's window as an inline SVG, drawn on the server.

Three panels share the hour axis: S3 keys vs rows in the warehouse, the damage the audits found
after the load (missing, duplicate, stale, late objects, stacked; ``audit_results``) and the
real-time path's drop rate at the hour's first merge (``realtime_quality``); hours the real-time
path dropped keys of get a red band. A stream without a real-time writer has no drop rate. :func:`layout` computes every shape and text in Python; ``templates/chart.svg.j2`` only
writes them, with autoescaping, so a stream name, a status or a link cannot become markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from firehose_loader.dashboard.model import HourPoint, StreamDashboard, duration, hour_key, percent
from firehose_loader.layout import HOUR

COLORS = {
    "s3_keys": "#2563eb",
    "warehouse_rows": "#16a34a",
    "missing_keys": "#dc2626",
    "duplicate_keys": "#f59e0b",
    "stale_keys": "#7c3aed",
    "late_objects": "#0891b2",
    "drop_rate": "#dc2626",
    "drop_band": "#fee2e2",
    "grid": "#e5e7eb",
    "text": "#374151",
}
FINDINGS = (
    ("missing_keys", "missing"),
    ("duplicate_keys", "duplicate"),
    ("stale_keys", "stale"),
    ("late_objects", "late objects"),
)
WIDTH = 980
LEFT, RIGHT = 64, 16
KEYS_TOP, KEYS_HEIGHT = 44, 170
FINDINGS_TOP, FINDINGS_HEIGHT = 246, 90
RATE_TOP, RATE_HEIGHT = 368, 54
AXIS_Y = RATE_TOP + RATE_HEIGHT
HEIGHT = AXIS_Y + 34


# --- What the template draws ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A ``<rect>``."""

    x: float
    y: float
    width: float
    height: float
    fill: str | None = None
    css_class: str | None = None


@dataclass(frozen=True)
class Label:
    """A ``<text>``."""

    x: float
    y: float
    text: str
    anchor: str | None = None
    fill: str | None = None
    css_class: str | None = None


@dataclass(frozen=True)
class Mark:
    """A ``<line>`` and the ``<text>`` beside it: a grid line and its value, a tick and its hour, the axis."""

    x1: float
    x2: float
    y1: float
    y2: float
    stroke: str
    label: Label


@dataclass(frozen=True)
class HourGroup:
    """One hour: its numbers as ``data-*`` attributes, a tooltip, a hit area and its bars, and an axis tick."""

    classes: str
    data: tuple[tuple[str, str], ...]
    tooltip: str
    href: str | None  # the hour's ledger; None draws the group without a link
    shapes: tuple[Box, ...]
    failed: Label | None  # the "!" of a failed audit
    tick: Mark | None


@dataclass(frozen=True)
class Chart:
    stream: str
    width: int
    height: int
    text_color: str
    legend: tuple[tuple[Box, Label], ...]
    titles: tuple[Label, ...]
    bands: tuple[Box, ...]  # hours with drops, behind everything
    grid: tuple[Mark, ...]
    note: Label | None  # why the findings panel is empty
    rate_note: Label | None  # why the drop-rate panel is empty
    hours: tuple[HourGroup, ...]
    axis: Mark


@dataclass(frozen=True)
class Scales:
    """The top value of each panel."""

    keys: float
    findings: float
    rate: float


# --- Geometry ---------------------------------------------------------------------------------------------------------


def tenth(value: float) -> float:
    """A coordinate to a tenth of a pixel (written as ``832.8``, ``44.0``)."""
    return round(float(value), 1)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (1 for nothing)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover


def number(value: float) -> str:
    """An axis value: ``2,500``, or ``0.5`` below one."""
    return f"{value:,.0f}" if value >= 1 or value == 0 else f"{value:g}"


def hour_tooltip(point: HourPoint) -> str:
    lines = [f"{point.hour:%Y-%m-%d %H:00} UTC"]
    if point.load_status is None:
        lines.append("not loaded")
    else:
        lines.append(f"load: {point.load_status}, {point.objects} objects, {point.records_quarantined} quarantined")
    source = f" (from the {point.s3_keys_source})" if point.s3_keys_source else ""
    lines.append(f"S3 keys: {'-' if point.s3_keys is None else point.s3_keys}{source}")
    lines.append(f"rows in the warehouse: {'-' if point.warehouse_rows is None else point.warehouse_rows}")
    if point.realtime_keys is not None:
        lines.append(
            f"real-time path (first merge): missing {point.realtime_missing}, doubled {point.realtime_duplicate},"
            f" stale {point.realtime_stale} of {point.realtime_keys} keys; drop rate {percent(point.drop_rate)}"
        )
    if point.audits:
        lines.append(f"audits: {point.audits}, latest {point.audit_status}")
        lines.append(
            f"damage after load (audit): missing {point.missing_keys}, doubled {point.duplicate_keys},"
            f" stale {point.stale_keys}, late objects {point.late_objects}; repaired {point.repaired_keys}"
        )
    else:
        lines.append("not audited yet")
    return "\n".join(lines)


def _legend() -> tuple[tuple[Box, Label], ...]:
    entries = []
    x: float = LEFT
    keys = [
        ("s3_keys", "S3 keys"),
        ("warehouse_rows", "rows in the warehouse"),
        *FINDINGS,
        ("drop_band", "real-time path dropped keys"),
    ]
    for key, label in keys:
        entries.append((Box(x, 8, 10, 10, fill=COLORS[key]), Label(x + 14, 17, label)))
        x += 22 + 6.4 * len(label)
    return tuple(entries)


LEGEND = _legend()
TITLES = (
    Label(LEFT, KEYS_TOP - 8, "S3 keys vs rows in the warehouse", css_class="title"),
    Label(
        LEFT,
        FINDINGS_TOP - 8,
        "damage after load (audit): missing / doubled / stale keys, late objects",
        css_class="title",
    ),
    Label(
        LEFT,
        RATE_TOP - 8,
        "real-time path drop rate at first merge (missing / S3 keys, realtime_quality)",
        css_class="title",
    ),
)
AXIS = Mark(LEFT, WIDTH - RIGHT, AXIS_Y, AXIS_Y, COLORS["text"], Label(WIDTH - RIGHT, AXIS_Y + 30, "hour (UTC)", "end"))


def scales(points: Sequence[HourPoint]) -> Scales:
    keys = nice_ceiling(max([point.s3_keys or 0 for point in points] + [point.warehouse_rows or 0 for point in points]))
    findings = nice_ceiling(max([point.findings for point in points] + [0]))
    rate = nice_ceiling(max([point.drop_rate or 0 for point in points] + [0]) * 100) / 100
    return Scales(keys=keys, findings=findings, rate=rate if rate > 0 else 0.01)


def grid(scale: Scales) -> tuple[Mark, ...]:
    """Three lines per panel (zero, half, top), each with its value."""
    marks = []
    for panel_top, height, top_value, formatter in (
        (KEYS_TOP, KEYS_HEIGHT, scale.keys, number),
        (FINDINGS_TOP, FINDINGS_HEIGHT, scale.findings, number),
        (RATE_TOP, RATE_HEIGHT, scale.rate, percent),
    ):
        for step in range(3):
            fraction = step / 2
            y = panel_top + height - fraction * height
            label = Label(LEFT - 6, tenth(y + 4), formatter(top_value * fraction), anchor="end")
            marks.append(Mark(LEFT, WIDTH - RIGHT, tenth(y), tenth(y), COLORS["grid"], label))
    return tuple(marks)


def hour_data(point: HourPoint) -> tuple[tuple[str, str], ...]:
    """The hour's numbers as the ``data-*`` attributes of its group (empty for none)."""
    data = {
        "hour": hour_key(point.hour),
        "load-status": point.load_status,
        "objects": point.objects,
        "s3-keys": point.s3_keys,
        "s3-keys-source": point.s3_keys_source,
        "warehouse-rows": point.warehouse_rows,
        "audits": point.audits,
        "audit-status": point.audit_status,
        "missing": point.missing_keys,
        "duplicate": point.duplicate_keys,
        "stale": point.stale_keys,
        "late": point.late_objects,
        "repaired": point.repaired_keys,
        "realtime-keys": point.realtime_keys,
        "realtime-missing": point.realtime_missing,
        "realtime-duplicate": point.realtime_duplicate,
        "realtime-stale": point.realtime_stale,
        "drop-rate": None if point.drop_rate is None else repr(point.drop_rate),
        "measured-by": point.realtime_measured_by,
    }
    return tuple((name, "" if value is None else str(value)) for name, value in data.items())


def hour_shapes(point: HourPoint, x0: float, slot: float, scale: Scales) -> tuple[Box, ...]:
    """The hit area, the two key bars, the stacked findings and the drop rate of one hour."""
    shapes = [Box(tenth(x0), KEYS_TOP, tenth(slot), AXIS_Y - KEYS_TOP, css_class="hit")]
    bar = slot * 0.36
    for offset, key, value in ((0.12, "s3_keys", point.s3_keys), (0.52, "warehouse_rows", point.warehouse_rows)):
        if value:
            height = value / scale.keys * KEYS_HEIGHT
            y = KEYS_TOP + KEYS_HEIGHT - height
            shapes.append(
                Box(tenth(x0 + slot * offset), tenth(y), tenth(bar), tenth(height), COLORS[key], key.replace("_", "-"))
            )
    y = FINDINGS_TOP + FINDINGS_HEIGHT
    for key, _label in FINDINGS:
        value = getattr(point, key) or 0
        if value:
            height = max(value / scale.findings * FINDINGS_HEIGHT, 1.5)
            y -= height
            shapes.append(
                Box(
                    tenth(x0 + slot * 0.2),
                    tenth(y),
                    tenth(slot * 0.6),
                    tenth(height),
                    COLORS[key],
                    key.replace("_", "-"),
                )
            )
    if point.drop_rate:
        height = max(min(point.drop_rate / scale.rate, 1) * RATE_HEIGHT, 1.5)
        y = RATE_TOP + RATE_HEIGHT - height
        shapes.append(
            Box(tenth(x0 + slot * 0.2), tenth(y), tenth(slot * 0.6), tenth(height), COLORS["drop_rate"], "drop-rate")
        )
    return tuple(shapes)


def hour_group(
    point: HourPoint, x0: float, slot: float, scale: Scales, href: str | None, selected: datetime | None
) -> HourGroup:
    classes = (
        ["hour"]
        + (["drops"] if point.has_drops else [])
        + (["damaged"] if point.has_damage else [])
        + (["selected"] if point.hour == selected else [])
    )
    failed = None
    if point.audit_status == "failed":
        y = FINDINGS_TOP + FINDINGS_HEIGHT - 4
        failed = Label(tenth(x0 + slot / 2), y, "!", anchor="middle", fill=COLORS["missing_keys"])
    tick = None
    if point.hour.hour % 6 == 0:
        text = f"{point.hour:%H:00}" if point.hour.hour else f"{point.hour:%b %d}"
        label = Label(tenth(x0), AXIS_Y + 18, text, anchor="middle")
        tick = Mark(tenth(x0), tenth(x0), AXIS_Y, AXIS_Y + 5, COLORS["text"], label)
    return HourGroup(
        classes=" ".join(classes),
        data=hour_data(point),
        tooltip=hour_tooltip(point),
        href=href or None,
        shapes=hour_shapes(point, x0, slot, scale),
        failed=failed,
        tick=tick,
    )


def layout(
    dashboard: StreamDashboard, link: Callable[[datetime], str] | None = None, selected: datetime | None = None
) -> Chart:
    """Everything the chart draws, positioned; ``link(hour)`` is the URL an hour's bars lead to."""
    points = dashboard.hours
    slot = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    scale = scales(points)
    note = None
    if not any(point.findings for point in points):
        text = (
            "no audit in this window"
            if not any(point.audits for point in points)
            else "the audits found no damage after the load"
        )
        note = Label((LEFT + WIDTH - RIGHT) / 2, FINDINGS_TOP + FINDINGS_HEIGHT / 2, text, anchor="middle")
    rate_note = None
    if not dashboard.realtime_writer:
        text = "no real-time writer (realtime_writer is not set): no drop rate"
    elif not any(point.realtime_keys is not None for point in points):
        text = "no hour of this window was first merged yet"
    else:
        text = ""
    if text:
        rate_note = Label((LEFT + WIDTH - RIGHT) / 2, RATE_TOP + RATE_HEIGHT / 2 + 4, text, anchor="middle")
    return Chart(
        stream=dashboard.stream,
        width=WIDTH,
        height=HEIGHT,
        text_color=COLORS["text"],
        legend=LEGEND,
        titles=TITLES,
        bands=tuple(
            Box(tenth(LEFT + index * slot), KEYS_TOP, tenth(slot), AXIS_Y - KEYS_TOP, COLORS["drop_band"], "drop-band")
            for index, point in enumerate(points)
            if point.has_drops
        ),
        grid=grid(scale),
        note=note,
        rate_note=rate_note,
        hours=tuple(
            hour_group(point, LEFT + index * slot, slot, scale, link(point.hour) if link else None, selected)
            for index, point in enumerate(points)
        ),
        axis=AXIS,
    )


# --- Drawing ----------------------------------------------------------------------------------------------------------

SVG = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def chart_svg(
    dashboard: StreamDashboard, link: Callable[[datetime], str] | None = None, selected: datetime | None = None
) -> str:
    """The window as an SVG: S3 keys vs warehouse rows, damage after load, real-time drop rate; drops in red.

    ``link(hour)`` gives the URL an hour's bars lead to (its ledger); every hour group carries
    its numbers as ``data-*`` attributes and a ``<title>`` tooltip.
    """
    return SVG.get_template("chart.svg.j2").render(chart=layout(dashboard, link, selected))


# --- Freshness: landing -> committed per landing hour ----------------------------------------------------------------

FRESHNESS_WIDTH, FRESHNESS_HEIGHT, FRESHNESS_PLOT = 720, 150, 100


@dataclass(frozen=True)
class FreshnessBar:
    hour: datetime
    x: float
    width: float
    p50: Box  # the bar: half the hour's objects were committed within it
    p95: Mark  # a tick at the p95
    max: Mark  # the whisker up to the slowest
    tooltip: str
    data: tuple[tuple[str, str], ...]


def freshness_layout(dashboard: StreamDashboard) -> dict[str, Any]:
    """Per landing hour of the window: p50 as a bar, p95 as a tick, the slowest as a whisker (seconds, linear)."""
    freshness = dashboard.freshness
    hours = max(1, int((dashboard.end - dashboard.start) / HOUR))
    left, right, top = 56, 12, 24
    slot = (FRESHNESS_WIDTH - left - right) / hours
    ceiling = nice_ceiling(max([hour.max for hour in freshness.hours] + [1.0]))
    bottom = top + FRESHNESS_PLOT

    def y(seconds: float) -> float:
        return round(bottom - min(seconds / ceiling, 1.0) * FRESHNESS_PLOT, 1)

    bars = []
    for hour in freshness.hours:
        index = int((hour.hour - dashboard.start) / HOUR)
        if not 0 <= index < hours:
            continue
        x = round(left + index * slot + slot * 0.15, 1)
        width = round(max(slot * 0.7, 1.0), 1)
        middle = round(x + width / 2, 1)
        tooltip = (
            f"{hour.hour:%Y-%m-%d %H:00}: {hour.objects} objects landed; committed within "
            f"p50 {duration(hour.p50)}, p95 {duration(hour.p95)}, max {duration(hour.max)}"
        )
        bars.append(
            FreshnessBar(
                hour.hour,
                x,
                width,
                Box(x, y(hour.p50), width, round(bottom - y(hour.p50), 1), COLORS["warehouse_rows"], "p50"),
                Mark(x, x + width, y(hour.p95), y(hour.p95), COLORS["text"], Label(x, y(hour.p95), "")),
                Mark(middle, middle, y(hour.max), y(hour.p50), COLORS["text"], Label(x, y(hour.max), "")),
                tooltip,
                (
                    ("hour", f"{hour.hour:%Y-%m-%dT%H}"),
                    ("objects", str(hour.objects)),
                    ("p50", f"{hour.p50:.1f}"),
                    ("p95", f"{hour.p95:.1f}"),
                    ("max", f"{hour.max:.1f}"),
                ),
            )
        )
    return {
        "stream": dashboard.stream,
        "width": FRESHNESS_WIDTH,
        "height": FRESHNESS_HEIGHT,
        "text_color": COLORS["text"],
        "title": Label(
            left, 14, "landing -> committed per landing hour: bar p50, tick p95, whisker max", css_class="title"
        ),
        "axis": Mark(left, FRESHNESS_WIDTH - right, bottom, bottom, COLORS["text"], Label(left, bottom + 14, "")),
        "ticks": [
            Mark(
                left - 4,
                left,
                y(value),
                y(value),
                COLORS["text"],
                Label(left - 6, y(value) + 4, duration(value), "end"),
            )
            for value in (0.0, ceiling / 2, ceiling)
        ],
        "bars": bars,
        "note": None if bars else Label(left + 8, top + FRESHNESS_PLOT / 2, "no object committed in this window"),
    }


def freshness_svg(dashboard: StreamDashboard) -> str:
    return SVG.get_template("freshness.svg.j2").render(chart=freshness_layout(dashboard))
