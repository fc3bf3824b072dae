"""Send a made-up audit alert through a stream's configured notifier (see docs/notifications.md).

The alert has the shape the audit sends (``firehose_audit``: stream, summary, report, hours) and
goes through the same code (:func:`firehose_loader.airflow.notify.send_alert`), so templates, the
notifier's class and its connection are all exercised. Nothing is read from or written to the
warehouse.

    python -m tools.send_test_alert events
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from firehose_loader.audit import format_report
from firehose_loader.config import Stream, load_config
from firehose_loader.layout import hour_start

ROOT = Path(__file__).resolve().parents[1]


def sample_alert(stream: Stream, now: datetime) -> tuple[dict, dict]:
    """(alert, context) as the audit builds them, for two made-up hours."""
    hour = hour_start(now) - timedelta(hours=2)
    results = [
        {
            "hour": hour,
            "status": "repaired",
            "s3_keys": 2000,
            "missing_keys": 7,
            "duplicate_keys": 4,
            "stale_keys": 3,
            "late_objects": 1,
            "error_objects": 0,
            "repaired_keys": 14,
            "drop_rate": 7 / 2000,
            "message": None,
        },
        {
            "hour": hour + timedelta(hours=1),
            "status": "failed",
            "s3_keys": None,
            "missing_keys": None,
            "duplicate_keys": None,
            "stale_keys": None,
            "late_objects": None,
            "error_objects": None,
            "repaired_keys": None,
            "drop_rate": None,
            "message": "TEST ALERT: nothing is wrong, this was sent by tools/send_test_alert.py",
        },
    ]
    summary = f"TEST {stream.name}: 2 of 2 audited hours needed more repair than {stream.audit_alert_threshold} keys or failed"
    hours = [
        {name: value.isoformat() if isinstance(value, datetime) else value for name, value in row.items()}
        for row in results
    ]
    alert = {"stream": stream.name, "summary": summary, "report": format_report(stream, results), "hours": hours}
    run_id = f"manual__{hour_start(now):%Y-%m-%dT%H:%M:%S}+00:00"
    context = {"run_id": run_id, "data_interval_end": hour_start(now), "dag_id": stream.audit_dag_id}
    return alert, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", help="the stream whose audit_notifier to use")
    args = parser.parse_args()
    from firehose_loader.airflow.notify import send_alert

    stream = load_config().stream(args.stream)
    alert, context = sample_alert(stream, datetime.now(UTC))
    print(f"sending a test alert through {stream.audit_notifier.class_path} ...")
    send_alert(stream.audit_notifier, context, alert)
    print("sent")


if __name__ == "__main__":
    main()
