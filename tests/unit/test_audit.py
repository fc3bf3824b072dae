"""The audit's pure parts: which hours a run covers, which objects are late, when to alert."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from firehose_loader.audit import audit_window, format_report, late_objects, needs_alert
from firehose_loader.s3io import ObjectInfo
from tests.unit.stream_factory import make_stream


def test_window_is_the_lookback_hours_before_the_interval_end():
    end = datetime(2026, 3, 1, 11, tzinfo=UTC)
    window = audit_window(end, 14)
    assert len(window) == 14
    assert window[0] == datetime(2026, 2, 28, 21, tzinfo=UTC)
    assert window[-1] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert all((later - earlier).total_seconds() == 3600 for earlier, later in itertools.pairwise(window))


def test_window_needs_at_least_one_hour():
    with pytest.raises(ValueError, match="lookback_hours"):
        audit_window(datetime(2026, 3, 1, 11, tzinfo=UTC), 0)


def test_late_objects_are_unloaded_or_changed_ones():
    listed = [ObjectInfo("a", "e1", 1), ObjectInfo("b", "e2", 1), ObjectInfo("c", "e3", 1)]
    loaded = {"a": "e1", "b": "changed"}
    assert [item.key for item in late_objects(listed, loaded)] == ["b", "c"]
    assert late_objects(listed, {"a": "e1", "b": "e2", "c": "e3"}) == []


def result(**values):
    base = {
        "hour": datetime(2026, 3, 1, 10),
        "status": "ok",
        "s3_keys": 10,
        "missing_keys": 0,
        "duplicate_keys": 0,
        "stale_keys": 0,
        "late_objects": 0,
        "error_objects": 0,
        "repaired_keys": 0,
        "drop_rate": 0.0,
    }
    return {**base, **values}


@pytest.mark.parametrize(
    ("values", "threshold", "expected"),
    [
        ({}, 0, False),
        ({"status": "repaired", "repaired_keys": 1}, 0, True),
        ({"status": "repaired", "repaired_keys": 3}, 3, False),
        ({"status": "repaired", "repaired_keys": 3, "late_objects": 1}, 3, True),
        ({"status": "failed", "repaired_keys": None, "late_objects": None}, 100, True),
    ],
)
def test_alert_when_repair_exceeds_threshold_or_fails(values, threshold, expected):
    assert needs_alert(result(**values), threshold) is expected


def test_report_shows_one_line_per_hour_with_the_drop_rate():
    stream = make_stream()
    report = format_report(
        stream, [result(missing_keys=3, drop_rate=0.3, status="repaired"), result(status="failed", s3_keys=None)]
    )
    lines = report.splitlines()
    assert stream.name in lines[0]
    assert len(lines) == 4
    assert "30.00%" in lines[2] and "repaired" in lines[2]
    assert "failed" in lines[3] and " - " in lines[3]
