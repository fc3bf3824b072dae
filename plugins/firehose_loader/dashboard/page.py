"""The dashboard's HTML page: ``templates/dashboard.html`` with each stream's chart inline.

Self-contained: inline CSS and SVG, no script, nothing fetched from elsewhere. Links are
relative, so the page works wherever the plugin is mounted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import markupsafe

from firehose_loader.config import StreamError
from firehose_loader.dashboard.chart import COLORS, chart_svg, freshness_svg
from firehose_loader.dashboard.model import (
    WINDOW_HOURS,
    HourDetail,
    StreamDashboard,
    aware,
    duration,
    hour_key,
    percent,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def hour_text(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:00}"


def time_text(value: datetime | None) -> str:
    return "-" if value is None else f"{aware(value):%Y-%m-%d %H:%M:%S}"


def basename(value: Any) -> str:
    return "" if value is None else str(value).rsplit("/", 1)[-1]


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        percent=percent, count=count, hour_text=hour_text, time_text=time_text, basename=basename, duration=duration
    )
    return environment


PAGE = _environment()


def page_link(stream: str, hour: datetime | None = None, end: datetime | None = None) -> str:
    """A link to the page itself (relative, so it works wherever the plugin is mounted)."""
    query = {"stream": stream}
    if hour is not None:
        query["hour"] = hour_key(hour)
    if end is not None:
        query["end"] = hour_key(end)
    return f"?{urlencode(query)}#{'ledger' if hour is not None else 'stream'}-{stream}"


def ledger_links(stream: str, end: datetime | None) -> Callable[[datetime], str]:
    """The links of a stream's chart: each hour leads to its ledger on this page, in the same window."""

    def link(hour: datetime) -> str:
        return page_link(stream, hour, end)

    return link


def render_page(
    dashboards: Sequence[StreamDashboard],
    *,
    now: datetime,
    end: datetime | None = None,
    selected_stream: str | None = None,
    detail: HourDetail | None = None,
    airflow_root: str = "",
    errors: Mapping[str, str] | None = None,
    hidden_streams: int = 0,
    refused: Sequence[StreamError] = (),
) -> str:
    """The whole page, self-contained: inline CSS and SVG, no script, nothing fetched from elsewhere."""
    charts = {
        dashboard.stream: chart_svg(
            dashboard,
            link=ledger_links(dashboard.stream, end),
            selected=detail.hour if detail is not None and detail.stream == dashboard.stream else None,
        )
        for dashboard in dashboards
    }
    return PAGE.get_template("dashboard.html").render(
        dashboards=dashboards,
        charts={name: markupsafe.Markup(svg) for name, svg in charts.items()},
        freshness_charts={dashboard.stream: markupsafe.Markup(freshness_svg(dashboard)) for dashboard in dashboards},
        now=now,
        end=end,
        window_hours=WINDOW_HOURS,
        selected_stream=selected_stream,
        detail=detail,
        airflow_root=airflow_root.rstrip("/"),
        errors=errors or {},
        hidden_streams=hidden_streams,
        refused=refused,
        colors=COLORS,
        page_link=page_link,
        hour_key=hour_key,
        previous_end=(dashboards[0].start - timedelta(hours=1)) if dashboards else None,
        next_end=(dashboards[0].end + timedelta(hours=WINDOW_HOURS - 1)) if dashboards else None,
    )
