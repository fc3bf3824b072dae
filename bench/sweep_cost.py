"""The late sweep's cost when nothing is late: list every hour folder of the horizon, compare with the ledger.

``python -m bench.sweep_cost [hours] [objects per hour]`` against the local stack (``. .local/stack.env``):
it writes ``objects`` small objects into each of ``hours`` hour folders of a fresh bucket, gives
each hour ledger and load_hours rows that match (as a load would), then times ``sweep_hours``
over the horizon (three runs; each must find nothing). Firehose with a 5-minute buffer writes
12 objects an hour, the default.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import psycopg

from firehose_loader.config import Settings, parse_stream
from firehose_loader.layout import hour_start, stream_layout
from firehose_loader.load import ensure_tables
from firehose_loader.s3io import list_hour_objects
from firehose_loader.sweep import sweep_hours
from firehose_loader.warehouse.postgres import Postgres


def main(hours: int = 168, per_hour: int = 12) -> float:
    token = uuid.uuid4().hex[:8]
    entry = {
        "name": f"sweep_cost_{token}",
        "bucket": f"sweep-cost-{token}",
        "prefix": "events/",
        "table": f"sweep_cost_{token}.events",
        "key": ["id"],
        "order_by": "seq",
        "columns": {"id": "varchar(32)", "seq": "integer"},
        "late_horizon_hours": max(24, hours),
    }
    stream, settings = parse_stream(entry, 0), Settings()
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    s3.create_bucket(Bucket=stream.bucket)
    end = hour_start(datetime.now(UTC))
    horizon = [end - (hours - index) * timedelta(hours=1) for index in range(hours)]
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, settings, Postgres())
        for hour in horizon:
            for n in range(per_hour):
                key = f"events/{hour:%Y/%m/%d/%H}/stream-1-{hour:%Y-%m-%d-%H}-{n:02d}"
                s3.put_object(Bucket=stream.bucket, Key=key, Body=b'{"id": "x", "seq": 1}\n' * 100)
            naive = hour.replace(tzinfo=None)
            for item in list_hour_objects(s3, stream.bucket, stream_layout(stream), hour):
                # The columns are named: the loader's tables gain columns (ensure_tables' ADDED_COLUMNS).
                conn.execute(
                    "INSERT INTO firehose_loader.ledger (stream, hour, object_key, etag, size_bytes, compression,"
                    " status, message, records_raw, records_valid, records_quarantined, records_duplicate,"
                    " records_inserted, records_updated, records_unchanged, records_superseded, quarantine_key,"
                    " run_id, loaded_at)"
                    " VALUES (%s, %s, %s, %s, %s, 'none', 'loaded', NULL, 100, 100, 0, 0, 1, 0, 0, 0, NULL, 'bench', now())",
                    (stream.name, naive, item.key, item.etag, item.size),
                )
            conn.execute(
                "INSERT INTO firehose_loader.load_hours (stream, hour, status, objects, objects_unreadable,"
                " error_objects, records_raw, records_valid, records_quarantined, records_duplicate, records_inserted,"
                " records_updated, records_unchanged, records_superseded, stage_key, run_id, loaded_at, listed_at)"
                " VALUES (%s, %s, 'loaded', %s, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 'bench', now(), now())",
                (stream.name, naive, per_hour),
            )
        conn.commit()
        timings = []
        for run in range(3):
            mark = time.perf_counter()
            findings = sweep_hours(conn, s3, stream, settings, Postgres(), horizon, f"bench-{run}", try_number=1)
            timings.append(time.perf_counter() - mark)
            assert findings == [], findings
    best = min(timings)
    print(
        f"late sweep, nothing late: {hours} hours x {per_hour} objects in {best:.2f} s "
        f"(best of 3: {', '.join(f'{t:.2f}' for t in timings)}; {best / hours * 1000:.1f} ms an hour)"
    )
    return best


if __name__ == "__main__":
    main(*(int(argument) for argument in sys.argv[1:3]))
