"""Every Firehose delivery layout, loaded by whole ingest DAG runs against moto S3 and PostgreSQL.

The same records are written twice: in Firehose's default layout (``events/YYYY/MM/DD/HH/``, UTC,
newline-delimited JSON) and in the layout under test (a Hive-style prefix, dynamic partitioning,
prefix time zone America/New_York across both DST changes, Snappy, Hadoop Snappy, Parquet, ORC).
Each layout must give exactly the table the default layout gives: the same rows, each from the
object of the same name (and, for JSON, at the same offset).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import cramjam
import orjson
import psycopg
import pyarrow as pa
import pyarrow.orc as pa_orc
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from firehose_loader.layout import default_layout, stream_layout
from firehose_loader.s3io import list_hour_objects
from tests.integration.conftest import run_audit, run_hour
from tests.integration.support import unlisted_stream

FIELDS = {
    "key": ["id"],
    "order_by": "seq",
    "columns": {
        "id": "varchar(32)",
        "seq": "integer",
        "event_type": "varchar(16)",
        "amount": "numeric(12,2)",
        "at": "timestamptz",
    },
}
HOURS = [datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC)]
EVENT_TYPES = ("click", "view", "buy")
# An integer column holds at most 2**31 - 1: this record is valid JSON and a valid Parquet int64, and quarantined.
OUT_OF_RANGE = 2**40
NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class FirehoseObject:
    """One object Firehose delivered: when its oldest record arrived, its name, and its records."""

    arrived: datetime
    name: str
    records: tuple[dict[str, Any], ...]


def record(number: int, seq: int, event_type: str, moment: datetime) -> dict[str, Any]:
    return {
        "id": f"k{number:03d}",
        "seq": seq,
        "event_type": event_type,
        "amount": f"{number * 1.25:.2f}",
        "at": moment.isoformat(),
    }


def objects_of(hours: list[datetime], bad_in: str | None = "00") -> list[FirehoseObject]:
    """Three objects an hour; "buy" first appears in the middle of the first hour. Each hour
    updates most keys of the hour before and adds ten; one record is out of range; some records
    come twice (at-least-once)."""
    delivered = []
    for index, hour in enumerate(hours):
        for minute in (0, 20, 40):
            arrived = hour + timedelta(minutes=minute, seconds=7)
            types = EVENT_TYPES[:2] if (index == 0 and minute == 0) else EVENT_TYPES
            records = [
                record(number, index * 10 + minute // 20, types[number % len(types)], arrived)
                for number in range(minute + 10 * index, minute + 10 * index + 30)
            ]
            records.append(records[3])  # the same record again
            if minute == 0 and bad_in == "00":
                records.insert(2, {**record(999, OUT_OF_RANGE, types[0], arrived), "id": f"bad{index}"})
            delivered.append(
                FirehoseObject(arrived, f"stream-1-{arrived:%Y-%m-%d-%H-%M-%S}-{index}{minute:02d}", tuple(records))
            )
    return delivered


def ndjson(records: tuple[dict[str, Any], ...]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in records)


def hadoop_snappy(body: bytes, block: int = 1000) -> bytes:
    """Hadoop's Snappy block format, as Firehose's HADOOP_SNAPPY writes it (several blocks here)."""
    out = []
    for start in range(0, len(body), block):
        raw = body[start : start + block]
        chunk = bytes(cramjam.snappy.compress_raw(raw))
        out.append(len(raw).to_bytes(4, "big") + len(chunk).to_bytes(4, "big") + chunk)
    return b"".join(out)


def arrow_table(records: tuple[dict[str, Any], ...]) -> pa.Table:
    """The records as Firehose's record format conversion writes them (a typed schema, as from Glue)."""
    return pa.table(
        {
            "id": pa.array([item["id"] for item in records], pa.string()),
            "seq": pa.array([item["seq"] for item in records], pa.int64()),
            "event_type": pa.array([item["event_type"] for item in records], pa.string()),
            "amount": pa.array([Decimal(item["amount"]) for item in records], pa.decimal128(12, 2)),
            "at": pa.array([datetime.fromisoformat(item["at"]) for item in records], pa.timestamp("ms", tz="UTC")),
        }
    )


def parquet(records: tuple[dict[str, Any], ...]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(arrow_table(records), buffer, compression="snappy")
    return buffer.getvalue()


def orc(records: tuple[dict[str, Any], ...]) -> bytes:
    buffer = io.BytesIO()
    pa_orc.write_table(arrow_table(records), buffer)
    return buffer.getvalue()


def utc_folder(item: FirehoseObject) -> str:
    return f"events/{item.arrived:%Y/%m/%d/%H}/{item.name}"


def write(
    s3: Any, bucket: str, objects: list[FirehoseObject], key: Callable[[FirehoseObject], list[tuple[str, bytes]]]
) -> None:
    for item in objects:
        for object_key, body in key(item):
            s3.put_object(Bucket=bucket, Key=object_key, Body=body)


def provenance_table(warehouse: Any, table: str, with_offset: bool = True) -> list[tuple]:
    """The table's rows with each row's object named by its file name (layouts differ in folders only)."""
    offset = sql.SQL(', "_firehose_offset"') if with_offset else sql.SQL("")
    query = sql.SQL(
        "SELECT id, seq, event_type, amount, at, regexp_replace(\"_firehose_object\", '^.*/', ''){} FROM {} ORDER BY id"
    ).format(offset, sql.Identifier(*table.split(".")))
    return warehouse.execute(query).fetchall()


def load_hours(warehouse: Any, stream: str) -> list[tuple]:
    return warehouse.execute(
        "SELECT hour, objects, error_objects, records_raw, records_valid, records_quarantined"
        " FROM firehose_loader.load_hours WHERE stream = %s ORDER BY hour",
        (stream,),
    ).fetchall()


@contextmanager
def list_calls(s3: Any) -> Iterator[list[str]]:
    """The Prefix of every ListObjectsV2 call the client makes inside the block."""
    calls: list[str] = []
    event = "before-call.s3.ListObjectsV2"
    s3.meta.events.register(
        event, lambda params, **_: calls.append(params["query_string"]["prefix"]), unique_id="count-list-calls"
    )
    try:
        yield calls
    finally:
        s3.meta.events.unregister(event, unique_id="count-list-calls")


def load(entry: dict[str, Any], hours: list[datetime]) -> None:
    for hour in hours:
        assert run_hour(entry["name"], hour).state == "success", hour


@pytest.fixture(scope="module")
def baseline(streams, s3, warehouse):
    """The records in the default layout, loaded hour by hour: the table every layout must give."""
    entry = streams.declare(s3, "layout_default", **FIELDS)
    write(s3, entry["bucket"], objects_of(HOURS), lambda item: [(utc_folder(item), ndjson(item.records))])
    load(entry, HOURS)
    rows = provenance_table(warehouse, entry["table"])
    assert len(rows) == 80 and not any(row[0].startswith("bad") for row in rows)
    return entry, rows


def hive_key(item: FirehoseObject) -> list[tuple[str, bytes]]:
    moment = item.arrived
    folder = f"events/year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour={moment:%H}/"
    return [
        (folder + item.name, ndjson(item.records)),
        # Neither a sub-folder nor another hour whose number starts alike is part of the hour.
        (f"{folder}nested/{item.name}", ndjson(item.records[:1])),
        (f"events/year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour=1/{item.name}", ndjson(item.records[:1])),
    ]


def test_a_hive_style_prefix_gives_the_default_layout_s_table(streams, s3, warehouse, baseline):
    entry = streams.declare(
        s3,
        "layout_hive",
        prefix="events/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/",
        **FIELDS,
    )
    write(s3, entry["bucket"], objects_of(HOURS), hive_key)
    load(entry, HOURS)
    assert provenance_table(warehouse, entry["table"]) == baseline[1]
    assert load_hours(warehouse, entry["name"]) == load_hours(warehouse, baseline[0]["name"])


def partitioned_key(item: FirehoseObject) -> list[tuple[str, bytes]]:
    """One object per partition value present in the object (Firehose splits a buffer by partition)."""
    out = []
    for event_type in EVENT_TYPES:
        records = tuple(entry for entry in item.records if entry["event_type"] == event_type)
        if records:
            out.append((f"events/{event_type}/{item.arrived:%Y/%m/%d/%H}/{item.name}-{event_type}", ndjson(records)))
    return out


@pytest.fixture(scope="module")
def partitioned(streams, s3, baseline):
    """The records under dynamic partitioning (partition first), with error output among the partitions' folders."""
    entry = streams.declare(
        s3,
        "layout_partitioned",
        prefix="events/!{partitionKeyFromQuery:event_type}/!{timestamp:yyyy/MM/dd/HH}/",
        error_prefix="events/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/",
        **FIELDS,
    )
    delivered = objects_of(HOURS)
    write(s3, entry["bucket"], delivered, partitioned_key)
    # Error output between the partitions' folders: counted, never loaded as a partition.
    error_key = f"events/processing-failed/{HOURS[0]:%Y/%m/%d/%H}/stream-1-failed"
    s3.put_object(Bucket=entry["bucket"], Key=error_key, Body=ndjson(delivered[0].records[:5]))
    load(entry, HOURS)
    return entry


def by_record(rows: list[tuple]) -> list[tuple]:
    # The partitioned objects are named <object>-<event type>; the offsets are in the partition's object.
    return [(*row[:5], row[5].rsplit("-", 1)[0]) for row in rows]


def test_dynamic_partitioning_with_a_value_that_appears_mid_hour(warehouse, baseline, partitioned):
    entry = partitioned
    assert by_record(provenance_table(warehouse, entry["table"], with_offset=False)) == [row[:6] for row in baseline[1]]
    hours = load_hours(warehouse, entry["name"])
    assert [row[2] for row in hours] == [1, 0]  # the error object, in the first hour only
    # "buy" is absent from the first object of the first hour: 2 + 3 + 3 objects, then 3 + 3 + 3.
    assert [row[1] for row in hours] == [8, 9]
    assert [row[3:] for row in hours] == [row[3:] for row in load_hours(warehouse, baseline[0]["name"])]


def test_the_audit_finds_a_late_object_in_a_partition_value_it_never_saw(s3, warehouse, partitioned):
    """The audit lists the hour the way the ingest did, so a new value's folder is part of the hour."""
    entry = partitioned
    late = {**record(500, 99, "refund", HOURS[0] + timedelta(minutes=55)), "id": "late-refund"}
    late_key = f"events/refund/{HOURS[0]:%Y/%m/%d/%H}/stream-1-late-refund"
    s3.put_object(Bucket=entry["bucket"], Key=late_key, Body=ndjson((late,)))
    assert run_audit(entry["name"], HOURS[-1] + timedelta(hours=1), lookback_hours=2).state == "success"
    rows = warehouse.execute(
        "SELECT hour, status, s3_keys, late_objects, error_objects FROM firehose_loader.audit_results"
        " WHERE stream = %s ORDER BY hour",
        (entry["name"],),
    ).fetchall()
    assert [(row[2], row[3], row[4]) for row in rows] == [(71, 1, 1), (70, 0, 0)]
    found = warehouse.execute(
        sql.SQL("SELECT seq, \"_firehose_object\" FROM {} WHERE id = 'late-refund'").format(
            sql.Identifier(*entry["table"].split("."))
        )
    ).fetchall()
    assert found == [(99, late_key)]


def test_the_dashboard_counts_a_custom_layout_s_rows_by_their_hour(warehouse, baseline, partitioned):
    from firehose_loader.config import Settings, parse_stream
    from firehose_loader.dashboard.queries import query_stream

    for entry in (baseline[0], partitioned):
        stream = parse_stream(entry, 0)
        with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
            board = query_stream(conn, stream, Settings(), HOURS[0], HOURS[-1] + timedelta(hours=1))
        counts = dict(
            warehouse.execute(
                sql.SQL('SELECT "_firehose_object", count(*) FROM {} GROUP BY 1').format(
                    sql.Identifier(*entry["table"].split("."))
                )
            ).fetchall()
        )
        layout = stream_layout(stream)
        expected = [sum(n for key, n in counts.items() if layout.hour_of_key(key) == hour) for hour in HOURS]
        assert all(expected)  # both hours keep winners (the second hour updates most keys, not all)
        assert [point.warehouse_rows for point in board.hours] == expected
        # Every row of the table is in one of the window's two hours.
        assert sum(expected) == sum(counts.values())


def test_the_list_calls_of_an_hour_of_100_partition_values(s3):
    """Partition first: one LIST finds the 100 values, one per value lists its folder of the hour.
    Partition after the hour: the hour's folder is listed once, whatever the number of values."""
    hour = HOURS[0]
    counts = {}
    for name, prefix, key in (
        (
            "partition_first",
            "p/!{partitionKeyFromQuery:t}/!{timestamp:yyyy/MM/dd/HH}/",
            "p/v{n:03d}/{hour:%Y/%m/%d/%H}/x",
        ),
        ("hour_first", "h/!{timestamp:yyyy/MM/dd/HH}/!{partitionKeyFromQuery:t}/", "h/{hour:%Y/%m/%d/%H}/v{n:03d}/x"),
    ):
        entry, stream = unlisted_stream(s3, f"lists_{name}", prefix=prefix, error_prefix="errors/", **FIELDS)
        for n in range(100):
            s3.put_object(Bucket=entry["bucket"], Key=key.format(n=n, hour=hour), Body=b"{}")
            # The next hour's folder of each value: listed past, never loaded.
            s3.put_object(Bucket=entry["bucket"], Key=key.format(n=n, hour=hour + timedelta(hours=1)), Body=b"{}")
        with list_calls(s3) as calls:
            listed = list_hour_objects(s3, entry["bucket"], stream_layout(stream), hour)
        assert [item.key for item in listed] == sorted(key.format(n=n, hour=hour) for n in range(100))
        counts[name] = len(calls)
    assert counts == {"partition_first": 101, "hour_first": 1}


def test_the_default_layout_lists_one_folder_in_one_call(s3):
    entry, _stream = unlisted_stream(s3, "lists_default", **FIELDS)
    with list_calls(s3) as calls:
        list_hour_objects(s3, entry["bucket"], default_layout("events/"), HOURS[0])
    assert calls == ["events/2026/03/01/10/"]


@pytest.mark.parametrize(
    ("name", "fields", "encode", "with_offset"),
    [
        pytest.param(
            "snappy", {}, lambda records: bytes(cramjam.snappy.compress(ndjson(records))), True, id="snappy-framed"
        ),
        pytest.param(
            "hadoop_snappy",
            {"compression": "HADOOP_SNAPPY"},
            lambda records: hadoop_snappy(ndjson(records)),
            True,
            id="hadoop-snappy",
        ),
        pytest.param("parquet", {}, parquet, False, id="parquet"),
        pytest.param("orc", {}, orc, False, id="orc"),
    ],
)
def test_compressed_and_converted_objects_give_the_default_layout_s_table(
    streams, s3, warehouse, baseline, name, fields, encode, with_offset
):
    entry = streams.declare(s3, f"layout_{name}", **FIELDS, **fields)
    write(s3, entry["bucket"], objects_of(HOURS), lambda item: [(utc_folder(item), encode(item.records))])
    load(entry, HOURS)
    expected = baseline[1] if with_offset else [row[:6] for row in baseline[1]]
    assert provenance_table(warehouse, entry["table"], with_offset=with_offset) == expected
    assert [row[1:] for row in load_hours(warehouse, entry["name"])] == [
        row[1:] for row in load_hours(warehouse, baseline[0]["name"])
    ]
    compression = warehouse.execute(
        "SELECT DISTINCT compression FROM firehose_loader.ledger WHERE stream = %s", (entry["name"],)
    ).fetchall()
    assert compression == [({"snappy": "snappy", "hadoop_snappy": "hadoop-snappy"}.get(name, name),)]
    # The out-of-range record of each hour's first object is quarantined, named by object and offset or row.
    first = objects_of(HOURS)[0]
    quarantine_key = f"firehose-loader/quarantine/{entry['name']}/{HOURS[0]:%Y/%m/%d/%H}/{first.name}.jsonl"
    body = s3.get_object(Bucket=entry["bucket"], Key=quarantine_key)["Body"].read()
    (line,) = [orjson.loads(text) for text in body.splitlines()]
    assert line["object_key"] == utc_folder(first) and orjson.loads(line["raw"])["id"] == "bad0"
    if with_offset:
        assert line["offset"] == len(ndjson(first.records[:2])) and "row" not in line
        assert line["reason"] == f"column seq: {OUT_OF_RANGE} is out of range for integer"
    else:
        # A Parquet or ORC object: the bad row is the third of the file (index 2).
        assert line["row"] == 2 and "offset" not in line
        assert line["reason"] == f"row 2: column seq: {OUT_OF_RANGE} is out of range for integer"


# -- America/New_York prefixes across both DST changes ---------------------------------------------

FALL_BACK = [datetime(2026, 11, 1, hour, tzinfo=UTC) for hour in (4, 5, 6, 7)]  # 00:00 EDT .. 02:00 EST
SPRING_FORWARD = [datetime(2026, 3, 8, hour, tzinfo=UTC) for hour in (5, 6, 7, 8)]  # 00:00 EST .. 04:00 EDT


def new_york_key(item: FirehoseObject) -> list[tuple[str, bytes]]:
    return [(f"events/{item.arrived.astimezone(NEW_YORK):%Y/%m/%d/%H}/{item.name}", ndjson(item.records))]


@pytest.mark.parametrize(
    ("name", "hours", "objects_per_run"),
    [
        # 05:00-07:00 UTC is 01:00-02:00 twice: one folder, loaded by the run of 06:00, none by that of 05:00.
        pytest.param("fall_back", FALL_BACK, [3, 0, 6, 3], id="fall-back-25-hour-day"),
        # 07:00 UTC is 03:00 EDT: no 02 folder, every run one folder.
        pytest.param("spring_forward", SPRING_FORWARD, [3, 3, 3, 3], id="spring-forward-23-hour-day"),
    ],
)
def test_new_york_prefixes_across_a_dst_change_give_the_utc_table(streams, s3, warehouse, name, hours, objects_per_run):
    delivered = objects_of(hours)
    utc = streams.declare(s3, f"dst_utc_{name}", **FIELDS)
    local = streams.declare(
        s3, f"dst_ny_{name}", prefix="events/!{timestamp:yyyy/MM/dd/HH}/", prefix_timezone="America/New_York", **FIELDS
    )
    write(s3, utc["bucket"], delivered, lambda item: [(utc_folder(item), ndjson(item.records))])
    write(s3, local["bucket"], delivered, new_york_key)
    load(utc, hours)
    load(local, hours)
    assert provenance_table(warehouse, local["table"]) == provenance_table(warehouse, utc["table"])
    assert len(provenance_table(warehouse, local["table"])) == 70 + 10 * (len(hours) - 1)
    assert [row[1] for row in load_hours(warehouse, local["name"])] == objects_per_run
