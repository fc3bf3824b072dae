"""The late sweep's pure parts: which objects are late, how late, its report, its horizon field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from firehose_loader.audit import late_objects
from firehose_loader.config import ConfigError, parse_stream
from firehose_loader.layout import StageWriter, stage_key
from firehose_loader.s3io import ObjectInfo
from firehose_loader.sweep import SweepFinding, format_findings, lateness_seconds, sweep_writer
from tests.unit.stream_factory import STREAM_ENTRY, stream_entry

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_only_new_or_changed_objects_are_late_and_last_modified_is_not_their_identity() -> None:
    listed = [
        ObjectInfo("a", "e1", 10, HOUR),
        ObjectInfo("b", "e2", 10, HOUR + timedelta(days=3)),
        ObjectInfo("c", "e3", 10),
    ]
    assert late_objects(listed, {"a": "e1", "b": "old", "gone": "e9"}) == [listed[1], listed[2]]
    assert ObjectInfo("a", "e1", 10, HOUR) == ObjectInfo("a", "e1", 10, None)


def test_lateness_is_the_latest_object_after_its_hours_end() -> None:
    objects = [
        ObjectInfo("a", "e", 1, HOUR + timedelta(minutes=20)),
        ObjectInfo("b", "e", 1, HOUR + timedelta(hours=30, seconds=5)),
    ]
    assert lateness_seconds(HOUR, objects) == 29 * 3600 + 5
    assert lateness_seconds(HOUR, objects[:1]) == 0
    assert lateness_seconds(HOUR, [ObjectInfo("c", "e", 1)]) is None


def test_the_report_names_each_hour_its_objects_and_how_late() -> None:
    stream = parse_stream(STREAM_ENTRY, 0)
    findings = [
        SweepFinding(HOUR, "late", ("orders/raw/2026/03/01/10/obj-1",), 29 * 3600, 6),
        SweepFinding(HOUR + timedelta(hours=1), "failed", message="RuntimeError: boom"),
    ]
    report = format_findings(stream, 168, findings)
    assert report.splitlines()[0] == "late sweep of orders over 168 hours: 2 hour(s) with findings"
    assert "29.0" in report and "obj-1" in report and "RuntimeError: boom" in report
    assert format_findings(stream, 168, []) == "late sweep of orders over 168 hours: 0 hour(s) with findings"


def test_a_sweep_stages_under_a_key_of_its_own() -> None:
    stream = parse_stream(STREAM_ENTRY, 0)
    run = "scheduled__2026-03-01T11:00:00+00:00"
    sweep = stage_key(stream, HOUR, sweep_writer(run, 2))
    assert "/sweep/" in sweep and sweep.endswith("/late_sweep.try-0002.parquet")
    assert sweep != stage_key(stream, HOUR, StageWriter("audit", run, "late_sweep", 2))


def test_late_horizon_hours_defaults_to_a_week_and_is_bounded() -> None:
    assert parse_stream(STREAM_ENTRY, 0).late_horizon_hours == 168
    assert parse_stream(stream_entry(late_horizon_hours=24 * 90), 0).late_horizon_hours == 2160
    for value in (23, 24 * 90 + 1, True, "168"):
        with pytest.raises(ConfigError, match="late_horizon_hours"):
            parse_stream(stream_entry(late_horizon_hours=value), 0)
