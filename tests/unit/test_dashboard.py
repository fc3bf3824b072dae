"""The audit dashboard's pure parts: the window, merging the query results, the SVG chart, the page, the SQL."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from firehose_loader.config import Settings
from firehose_loader.dashboard.chart import chart_svg, freshness_svg
from firehose_loader.dashboard.model import (
    Freshness,
    HourDetail,
    StreamDashboard,
    build_points,
    hour_key,
    jsonable,
    measure_freshness,
    parse_hour,
    summarize,
    window,
)
from firehose_loader.dashboard.page import render_page
from firehose_loader.dashboard.queries import folder_hour, warehouse_rows_range
from firehose_loader.warehouse.render import render
from tests.unit.stream_factory import make_stream

NOW = datetime(2026, 3, 2, 9, 41, 5, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
STREAM = make_stream(name="orders", prefix="orders/raw/")
SETTINGS = Settings(loader_schema="loader_meta")


def test_window_is_the_48_hours_ending_with_the_current_hour():
    start, end = window(None, NOW)
    assert start == datetime(2026, 2, 28, 10, tzinfo=UTC)
    assert end == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert (end - start) / timedelta(hours=1) == 48


def test_window_can_end_at_a_chosen_hour():
    assert window(datetime(2026, 3, 1, 12, tzinfo=UTC), NOW, hours=3) == (
        datetime(2026, 3, 1, 10, tzinfo=UTC),
        datetime(2026, 3, 1, 13, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "text",
    ["2026-03-01T10", "2026-03-01T10:00", "2026-03-01T10:00:00Z", "2026-03-01T11:00:00+01:00", " 2026-03-01 10:00 "],
)
def test_parse_hour_accepts_iso_hours(text):
    assert parse_hour(text) == datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-03-01T10:30", "yesterday", "", "2026-13-01T10:00", "10:00"])
def test_parse_hour_refuses_what_is_not_a_whole_hour(text):
    with pytest.raises(ValueError):
        parse_hour(text)


def test_folder_hours_and_the_provenance_range():
    assert folder_hour("2026/03/01/07") == datetime(2026, 3, 1, 7, tzinfo=UTC)
    assert folder_hour("2026/03/01/7x") is None
    start, end = window(datetime(2026, 3, 1, 12, tzinfo=UTC), NOW, hours=3)
    assert warehouse_rows_range(STREAM, start, end) == {
        "folder_position": len("orders/raw/") + 1,
        "low": "orders/raw/2026/03/01/10/",
        "high": "orders/raw/2026/03/01/13/",
    }


def load_row(hour: datetime, **values) -> dict:
    row = {
        "hour": hour.replace(tzinfo=None),
        "status": "loaded",
        "objects": 6,
        "records_raw": 2060,
        "records_quarantined": 0,
        "records_duplicate": 60,
        "batch_keys": 2000,
        "error_objects": 0,
        "loaded_at": hour.replace(tzinfo=None) + timedelta(hours=1, minutes=16),
    }
    return row | values


def audit_row(hour: datetime, **values) -> dict:
    row = {
        "hour": hour.replace(tzinfo=None),
        "audits": 1,
        "failed_audits": 0,
        "repaired_audits": 1,
        "missing_keys": 7,
        "duplicate_keys": 4,
        "stale_keys": 3,
        "late_objects": 1,
        "repaired_keys": 14,
        "last_audited_at": hour.replace(tzinfo=None) + timedelta(hours=2),
        "latest_status": "repaired",
        "latest_s3_keys": 2010,
        "latest_error_objects": 2,
        "latest_message": None,
        "latest_run_id": "scheduled__x",
    }
    return row | values


def realtime_row(hour: datetime, keys: int, missing: int, duplicate: int, stale: int) -> dict:
    return {
        "hour": hour.replace(tzinfo=None),
        "s3_keys": keys,
        "missing_keys": missing,
        "duplicate_keys": duplicate,
        "stale_keys": stale,
        "drop_rate": missing / keys,
        "measured_at": hour.replace(tzinfo=None) + timedelta(hours=1, minutes=16),
        "run_id": "scheduled__load",
        "measured_by": "ingest",
        "last_measured_at": hour.replace(tzinfo=None) + timedelta(hours=1, minutes=16),
    }


def sample(hours: int = 48, realtime_writer: bool = True) -> StreamDashboard:
    start, end = window(None, NOW, hours=hours)
    loaded = [start + timedelta(hours=offset) for offset in (40, 41, 42)]
    loads = [load_row(hour) for hour in loaded]
    audits = [
        audit_row(loaded[1]),
        audit_row(loaded[2], missing_keys=0, duplicate_keys=0, stale_keys=0, late_objects=0, repaired_keys=0)
        | {"latest_status": "ok", "repaired_audits": 0, "latest_s3_keys": 2000},
    ]
    rows = {loaded[0]: 2000, loaded[1]: 1993, loaded[2]: 2000}
    # The real-time path at first merge: hour 40 lost 12 of 2000 keys, hour 41 lost 20 of 2010, hour 42 none.
    realtime = (
        [
            realtime_row(loaded[0], 2000, 12, 5, 7),
            realtime_row(loaded[1], 2010, 20, 0, 3),
            realtime_row(loaded[2], 2000, 0, 1, 0),
        ]
        if realtime_writer
        else []
    )
    points = build_points(start, end, loads, audits, rows, realtime)
    return StreamDashboard(
        "orders",
        "sales.order_lines",
        "ingest_orders",
        "audit_orders",
        start,
        end,
        True,
        points,
        summarize(points),
        realtime_writer=realtime_writer,
    )


def test_build_points_gives_one_point_per_hour_and_prefers_the_audits_key_count():
    board = sample()
    assert len(board.hours) == 48
    assert [point.hour for point in board.hours] == [board.start + timedelta(hours=offset) for offset in range(48)]
    only_loaded, damaged, clean = board.hours[40:43]
    assert (only_loaded.s3_keys, only_loaded.s3_keys_source, only_loaded.audits) == (2000, "load", 0)
    assert only_loaded.missing_keys is None and not only_loaded.has_damage
    # The real-time path at first merge (realtime_quality) and the damage after the load (audit) are two accounts.
    assert (only_loaded.realtime_missing, only_loaded.realtime_duplicate, only_loaded.realtime_stale) == (12, 5, 7)
    assert only_loaded.drop_rate == pytest.approx(12 / 2000) and only_loaded.has_drops
    assert (damaged.s3_keys, damaged.s3_keys_source, damaged.warehouse_rows) == (2010, "audit", 1993)
    assert (damaged.missing_keys, damaged.duplicate_keys, damaged.stale_keys, damaged.late_objects) == (7, 4, 3, 1)
    assert (damaged.realtime_keys, damaged.realtime_missing, damaged.realtime_stale) == (2010, 20, 3)
    assert damaged.drop_rate == pytest.approx(20 / 2010) and damaged.realtime_measured_by == "ingest"
    assert damaged.error_objects == 2 and damaged.has_drops and damaged.has_damage and damaged.findings == 15
    assert (clean.audit_status, clean.drop_rate, clean.has_drops, clean.has_damage) == ("ok", 0.0, False, False)
    assert clean.realtime_duplicate == 1
    assert damaged.hour.tzinfo is UTC and damaged.last_audited_at.tzinfo is UTC
    assert not board.hours[0].has_data


def test_summary_keeps_the_first_merge_and_the_damage_after_load_apart():
    summary = sample().summary
    assert (summary.hours_loaded, summary.hours_audited, summary.hours_with_drops) == (3, 2, 2)
    # Damage after the load (audit_results): only the audited hour 41 had any.
    assert (summary.missing_keys, summary.duplicate_keys, summary.stale_keys, summary.late_objects) == (7, 4, 3, 1)
    assert (summary.repaired_keys, summary.hours_damaged, summary.s3_keys_audited) == (14, 1, 4010)
    # The real-time path at first merge (realtime_quality): the three measured hours.
    assert (summary.hours_measured, summary.realtime_keys) == (3, 6010)
    assert (summary.realtime_missing, summary.realtime_duplicate, summary.realtime_stale) == (32, 6, 10)
    assert summary.drop_rate == pytest.approx(32 / 6010)
    assert summarize(build_points(NOW - timedelta(hours=2), NOW, [], [], {})).drop_rate is None


def test_a_first_merge_by_a_micro_batch_is_not_shown_as_a_drop_rate():
    start, end = window(None, NOW, hours=2)
    # A micro-batch merged the keys a minute after landing, before the real-time writer had most of them.
    early = realtime_row(start, 2000, 1900, 0, 0) | {"measured_by": "microbatch"}
    points = build_points(start, end, [load_row(start)], [], {start: 2000}, [early])
    assert (points[0].drop_rate, points[0].realtime_missing, points[0].has_drops) == (None, None, False)
    assert points[0].realtime_measured_by == "microbatch"
    summary = summarize(points)
    assert (summary.drop_rate, summary.hours_measured, summary.hours_with_drops) == (None, 0, 0)


def test_a_stream_without_a_real_time_writer_has_no_drop_rate():
    board = sample(realtime_writer=False)
    assert board.summary.drop_rate is None and board.summary.hours_measured == 0
    assert board.summary.missing_keys == 7  # the damage after the load is still the audit's
    svg = chart_svg(board)
    assert "no real-time writer" in svg
    assert not [rect for rect in ET.fromstring(svg).iter(f"{SVG}rect") if rect.get("class") == "drop-rate"]
    page = render_page([board], now=NOW)
    assert 'data-kpi="no-realtime-writer"' in page and 'data-kpi="drop-rate"' not in page


def hour_groups(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [element for element in root.iter(f"{SVG}g") if "hour" in element.get("class", "").split()]


def test_chart_is_valid_svg_with_the_numbers_of_every_hour():
    board = sample()
    svg = chart_svg(board, link=lambda hour: f"?hour={hour:%H}", selected=board.hours[41].hour)
    groups = hour_groups(svg)
    assert len(groups) == 48
    damaged = groups[41]
    assert damaged.get("data-hour") == hour_key(board.hours[41].hour)
    assert {name: damaged.get(f"data-{name}") for name in ("s3-keys", "warehouse-rows", "missing", "duplicate")} == {
        "s3-keys": "2010",
        "warehouse-rows": "1993",
        "missing": "7",
        "duplicate": "4",
    }
    assert (damaged.get("data-stale"), damaged.get("data-late"), damaged.get("data-audit-status")) == (
        "3",
        "1",
        "repaired",
    )
    assert float(damaged.get("data-drop-rate")) == pytest.approx(20 / 2010)
    assert [damaged.get(f"data-realtime-{name}") for name in ("keys", "missing", "duplicate", "stale")] == [
        "2010",
        "20",
        "0",
        "3",
    ]
    assert set(damaged.get("class").split()) == {"hour", "drops", "damaged", "selected"}
    tooltip = damaged.find(f"{SVG}title").text
    assert "damage after load (audit): missing 7, doubled 4, stale 3, late objects 1; repaired 14" in tooltip
    assert "real-time path (first merge): missing 20, doubled 0, stale 3 of 2010 keys; drop rate 1.00%" in tooltip
    assert {rect.get("class") for rect in damaged.iter(f"{SVG}rect")} >= {
        "hit",
        "s3-keys",
        "warehouse-rows",
        "missing-keys",
        "duplicate-keys",
        "stale-keys",
        "late-objects",
        "drop-rate",
    }
    bands = [rect for rect in ET.fromstring(svg).iter(f"{SVG}rect") if rect.get("class") == "drop-band"]
    assert len(bands) == 2  # the hours the real-time path dropped keys of (40, 41)
    rates = [rect for rect in ET.fromstring(svg).iter(f"{SVG}rect") if rect.get("class") == "drop-rate"]
    assert len(rates) == 2
    links = [element.get("href") for element in ET.fromstring(svg).iter(f"{SVG}a")]
    assert len(links) == 48 and links[41] == f"?hour={board.hours[41].hour:%H}"


def test_chart_of_an_empty_window_says_so():
    start, end = window(None, NOW)
    points = build_points(start, end, [], [], {})
    board = StreamDashboard("orders", "sales.order_lines", "i", "a", start, end, False, points, summarize(points))
    svg = chart_svg(board)
    assert "no audit in this window" in svg
    assert all(group.get("data-s3-keys") == "" for group in hour_groups(svg))


def test_chart_escapes_the_stream_the_statuses_and_the_links():
    hostile = "o\"><script>alert(1)</script><g x='"
    start, end = window(None, NOW, hours=2)
    loads = [load_row(start, status='<b onload="x">&')]
    audits = [audit_row(start) | {"latest_status": "</title><script>y</script>"}]
    points = build_points(start, end, loads, audits, {})
    board = StreamDashboard(hostile, "t", "i", "a", start, end, True, points, summarize(points))
    svg = chart_svg(board, link=lambda hour: '?a=1&b="><script>z</script>')
    assert "<script" not in svg and "<b " not in svg
    root = ET.fromstring(svg)  # still well-formed: every value stayed inside its attribute or text
    assert (root.get("id"), root.get("data-stream")) == (f"chart-{hostile}", hostile)
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))
    group = hour_groups(svg)[0]
    assert group.get("data-load-status") == '<b onload="x">&'
    assert group.get("data-audit-status") == "</title><script>y</script>"
    assert "latest </title><script>y</script>" in group.find(f"{SVG}title").text
    assert {element.get("href") for element in root.iter(f"{SVG}a")} == {'?a=1&b="><script>z</script>'}


def test_page_is_self_contained_and_escapes_what_it_shows():
    board = sample()
    hour = board.hours[41].hour
    detail = HourDetail(
        stream="orders",
        hour=hour,
        load=load_row(hour, run_id="run <1>", stage_key="s", objects_unreadable=0, objects_gone=0, records_valid=2000)
        | {
            "records_inserted": 1,
            "records_updated": 0,
            "records_unchanged": 0,
            "records_superseded": 0,
        },
        objects=(
            {
                "object_key": "orders/raw/2026/03/02/07/orders-1-x",
                "etag": "e",
                "size_bytes": 10,
                "compression": "gzip",
                "status": "partial",
                "message": "<script>alert(1)</script>",
                "records_raw": 3,
                "records_valid": 2,
                "records_quarantined": 1,
                "records_duplicate": 0,
                "records_inserted": 2,
                "records_updated": 0,
                "records_unchanged": 0,
                "records_superseded": 0,
                "quarantine_key": "q/orders-1-x.jsonl",
                "run_id": "r",
                "loaded_at": NOW,
            },
        ),
        audits=(),
        realtime=realtime_row(hour, 2010, 20, 0, 3),
        realtime_writer=True,
        totals={
            "size_bytes": 10,
            "records_raw": 3,
            "records_valid": 2,
            "records_quarantined": 1,
            "records_duplicate": 0,
            "records_inserted": 2,
            "records_updated": 0,
            "records_unchanged": 0,
            "records_superseded": 0,
        },
    )
    page = render_page([board], now=NOW, selected_stream="orders", detail=detail, airflow_root="/base/")
    assert "<script" not in page.replace("&lt;script&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "run &lt;1&gt;" in page
    # Nothing to fetch from elsewhere: no external URL but the SVG namespace, no stylesheet or image links.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "<link" not in page and "<img" not in page
    assert 'id="ledger-orders"' in page and "q/orders-1-x.jsonl" in page
    assert 'href="/base/dags/ingest_orders"' in page
    assert "0.53%" in page  # the window's real-time drop rate at first merge, 32 / 6010
    assert "Damage after load (audit)" in page and "Real-time path (first merge)" in page
    assert re.search(r'data-kpi="missing"><dt>missing after load</dt><dd>7</dd>', page)
    assert re.search(r'data-kpi="realtime-missing"><dt>missing at first merge</dt><dd>32</dd>', page)
    assert "of 2,010 S3 keys, 20 missing" in page  # the hour's realtime_quality row in its ledger


def test_json_is_plain_data():
    data = json.loads(json.dumps(jsonable(sample())))
    assert data["stream"] == "orders" and len(data["hours"]) == 48
    point = data["hours"][41]
    assert point["missing_keys"] == 7 and point["has_damage"] is True and point["findings"] == 15
    assert (point["realtime_missing"], point["realtime_stale"], point["realtime_findings"]) == (20, 3, 23)
    assert point["drop_rate"] == pytest.approx(20 / 2010) and point["has_drops"] is True
    assert point["hour"].endswith("+00:00") and data["realtime_writer"] is True
    assert data["summary"]["drop_rate"] == pytest.approx(32 / 6010)
    assert (data["summary"]["missing_keys"], data["summary"]["realtime_missing"]) == (7, 32)


CONTEXT = {"loader_schema": "loader_meta", "target": ("sales", "order_lines")}
TEMPLATES = [
    "dashboard/tables.sql",
    "dashboard/load_hours.sql",
    "dashboard/audits.sql",
    "dashboard/warehouse_rows.sql",
    "dashboard/warehouse_objects.sql",
    "dashboard/hour_load.sql",
    "dashboard/hour_ledger.sql",
    "dashboard/hour_audits.sql",
    "dashboard/realtime_quality.sql",
    "dashboard/hour_realtime.sql",
    "dashboard/hour_drift.sql",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_dashboard_sql_is_one_read_only_statement_with_quoted_names(template):
    text = render(template, **CONTEXT)
    assert text.strip().upper().startswith("SELECT")
    assert ";" not in text
    assert not re.search(r"\b(INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|TRUNCATE|GRANT)\b", text, re.IGNORECASE)
    if "loader_meta" in text:
        assert '"loader_meta".' in text
    assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize("template", [name for name in TEMPLATES if name != "dashboard/tables.sql"])
def test_dashboard_sql_refuses_unvalidated_names(template):
    with pytest.raises(ValueError):
        render(template, loader_schema='x"; DROP TABLE y; --', target=("sales", "order_lines; --"))


def commit_row(landed: datetime, seconds: float, by: str = "microbatch") -> dict:
    return {
        "landed_at": landed.replace(tzinfo=None),
        "committed_at": (landed + timedelta(seconds=seconds)).replace(tzinfo=None),
        "committed_by": by,
    }


def test_freshness_is_landing_to_first_commit_with_its_percentiles_and_the_lag():
    start, _end = window(None, NOW, hours=3)
    first, second = start + timedelta(hours=1), start + timedelta(hours=2)
    rows = [commit_row(first + timedelta(minutes=n), seconds) for n, seconds in enumerate(range(10, 210, 10))]
    rows += [commit_row(second + timedelta(minutes=5), 4500, "ingest"), {**commit_row(second, 1), "landed_at": None}]
    freshness = measure_freshness(rows, now=second + timedelta(minutes=20))
    assert freshness.objects == 21  # the row without a landing time is left out
    # 21 values: 10..200 s and 4500 s; nearest rank: p50 is the 11th, p95 the 20th.
    assert (freshness.p50, freshness.p95, freshness.max) == (110.0, 200.0, 4500.0)
    assert freshness.lag_seconds == 15 * 60  # the newest committed object landed at second + 5 min
    assert [(hour.hour, hour.objects, hour.p50, hour.max) for hour in freshness.hours] == [
        (first, 20, 100.0, 200.0),
        (second, 1, 4500.0, 4500.0),
    ]
    assert measure_freshness([], now=NOW) == Freshness()


def test_the_freshness_picture_and_numbers_are_on_the_page():
    start, end = window(None, NOW, hours=3)
    rows = [commit_row(start + timedelta(hours=1, minutes=n), 20 + n) for n in range(10)]
    points = build_points(start, end, [], [], {})
    board = StreamDashboard(
        "orders",
        "sales.order_lines",
        "i",
        "a",
        start,
        end,
        True,
        points,
        summarize(points),
        freshness=measure_freshness(rows, now=NOW),
        freshness_mode="events",
    )
    svg = freshness_svg(board)
    (bar,) = [group for group in ET.fromstring(svg).iter(f"{SVG}g") if group.get("class") == "landing-hour"]
    assert (bar.get("data-objects"), bar.get("data-p50"), bar.get("data-max")) == ("10", "24.0", "29.0")
    page = render_page([board], now=NOW)
    assert 'data-kpi="lag"' in page and "mode events" in page and 'id="freshness-orders"' in page
    assert re.search(r'data-kpi="freshness-p95"><dt>p95</dt><dd>29 s</dd>', page)
    empty = StreamDashboard("idle", "t", "i", "a", start, end, True, points, summarize(points))
    assert "no object committed in this window" in freshness_svg(empty)


def test_a_silence_and_the_late_sweeps_findings_are_on_the_page():
    """The stream's silence (escaped, with its first empty hour) and what the late sweep loaded into an hour."""
    board = dataclasses.replace(
        sample(),
        silences=(
            {
                "silent_from": NOW - timedelta(hours=5),
                "empty_hours": 2,
                "last_objects": 12,
                "alerted_at": NOW,
                "run_id": "run <s>",
            },
        ),
    )
    hour = board.hours[41].hour
    detail = HourDetail(
        stream="orders",
        hour=hour,
        load=None,
        objects=(),
        audits=(),
        sweeps=(
            {
                "swept_at": NOW,
                "run_id": "sweep-1",
                "try_number": 1,
                "status": "late",
                "late_objects": 2,
                "late_keys": "k/a\nk/<b>",
                "max_lateness_seconds": 3600,
                "records_loaded": 7,
                "message": None,
            },
            {
                "swept_at": NOW,
                "run_id": "sweep-2",
                "try_number": 1,
                "status": "failed",
                "late_objects": None,
                "late_keys": None,
                "max_lateness_seconds": None,
                "records_loaded": None,
                "message": "boom",
            },
        ),
    )
    page = render_page([board], now=NOW, selected_stream="orders", detail=detail)
    assert f'data-silence="{hour_key(NOW - timedelta(hours=5))}"' in page
    assert (
        "no object for 2 hour(s)" in page and "after 12 object(s)" in page and "run <code>run &lt;s&gt;</code>" in page
    )
    assert '<table class="sweeps">' in page
    assert "k/a, k/&lt;b&gt;" in page and ">3,600<" in page and ">7<" in page and ">boom<" in page
    assert sample().silences == () and "data-silence" not in render_page([sample()], now=NOW)
