"""An hour over ``split_above_bytes`` is extracted by mapped ``extract_part`` tasks and combined.

Promise: splitting changes where the work runs, not what is loaded. The same three hours go to
two streams, one extracted whole and one split into parts of a few objects each (keys duplicated
across parts, ties on the order column, bad records, an unreadable object); both must end with
byte-identical tables, the same ledger and load_hours counts, and the same quarantine.
"""

from __future__ import annotations

from typing import Any

import pytest

from firehose_loader.layout import StageWriter, is_split_stage
from tests.integration.conftest import dump_table, put, run_hour
from tests.integration.test_ingest import HOURS, rich_stream_fields, table_rows, write_hours

# write_hours' objects are 1-9 KB: parts of one to three objects. (Their gzip headers hold the time of
# writing, so ETags differ between the twins and are left out of the comparison.)
PART_BYTES = 9_000
LEDGER_COLUMNS = (
    "hour, object_key, size_bytes, compression, status, message, records_raw, records_valid,"
    " records_quarantined, records_duplicate, records_inserted, records_updated, records_unchanged,"
    " records_superseded, quarantine_key"
)
LOAD_HOURS_COLUMNS = (
    "hour, status, objects, objects_unreadable, error_objects, records_raw, records_valid, records_quarantined,"
    " records_duplicate, records_inserted, records_updated, records_unchanged, records_superseded"
)


def write_unreadable(s3: Any, bucket: str) -> None:
    body = b"\x1f\x8b" + bytes(range(256)) * 4  # gzip magic, then nothing gzip can read
    put(s3, bucket, f"events/{HOURS[1]:%Y/%m/%d/%H}/stream-1-corrupt.gz", body)


@pytest.fixture(scope="module")
def twins(streams, s3):
    whole = streams.declare(s3, "whole_hours", **rich_stream_fields())
    split = streams.declare(s3, "split_hours", **rich_stream_fields(), split_above_bytes=PART_BYTES)
    expected = write_hours(s3, whole["bucket"], seed=23)
    assert write_hours(s3, split["bucket"], seed=23).rows() == expected.rows()
    for entry in (whole, split):
        write_unreadable(s3, entry["bucket"])
    runs: dict[str, list] = {"whole": [], "split": []}
    for hour in HOURS:
        runs["whole"].append(run_hour(whole["name"], hour))
        runs["split"].append(run_hour(split["name"], hour))
    return whole, split, expected, runs


def task_states(dag_run) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return states


def ledger(warehouse: Any, stream: str) -> list[tuple]:
    return warehouse.execute(
        f"SELECT {LEDGER_COLUMNS} FROM firehose_loader.ledger WHERE stream = %s ORDER BY hour, object_key",
        (stream,),
    ).fetchall()


def load_hours(warehouse: Any, stream: str) -> list[tuple]:
    return warehouse.execute(
        f"SELECT {LOAD_HOURS_COLUMNS} FROM firehose_loader.load_hours WHERE stream = %s ORDER BY hour",
        (stream,),
    ).fetchall()


def without_stream_name(rows: list[tuple], name: str) -> list[tuple]:
    """Ledger rows with the stream's name taken out of quarantine keys (each stream has its own)."""
    return [
        tuple(value.replace(name, "<stream>") if isinstance(value, str) else value for value in row) for row in rows
    ]


def test_big_hours_run_as_parts_and_small_ones_do_not(twins):
    _whole, _split, _expected, runs = twins
    for run in runs["whole"]:
        states = task_states(run)
        assert run.state == "success"
        assert states["extract_part"] == ["skipped"]  # mapped over no parts
        assert states["combine_parts"] == ["success"]
    for run in runs["split"]:
        states = task_states(run)
        assert run.state == "success"
        assert len(states["extract_part"]) >= 3
        assert set(states["extract_part"]) == {"success"}


def test_split_hours_load_the_same_table_ledger_and_counts(twins, warehouse):
    whole, split, expected, _runs = twins
    assert table_rows(warehouse, split["table"]) == expected.rows()
    assert dump_table(warehouse, split["table"], "tenant, event_id") == dump_table(
        warehouse, whole["table"], "tenant, event_id"
    )
    split_ledger = ledger(warehouse, split["name"])
    assert without_stream_name(split_ledger, split["name"]) == without_stream_name(
        ledger(warehouse, whole["name"]), whole["name"]
    )
    assert sum(row[10] for row in split_ledger) > 0  # duplicates were removed, some of them across parts
    assert load_hours(warehouse, split["name"]) == load_hours(warehouse, whole["name"])
    assert [row[1] for row in load_hours(warehouse, split["name"])] == ["partial"] * len(HOURS)


def quarantine_of(s3: Any, entry: dict[str, Any]) -> dict[str, bytes]:
    """A stream's quarantine files by name, with its stream name and bucket taken out (each twin has its own)."""
    prefix = f"firehose-loader/quarantine/{entry['name']}/"
    listing = s3.list_objects_v2(Bucket=entry["bucket"], Prefix=prefix).get("Contents", [])
    return {
        item["Key"].removeprefix(prefix): s3.get_object(Bucket=entry["bucket"], Key=item["Key"])["Body"]
        .read()
        .replace(entry["name"].encode(), b"<stream>")
        .replace(entry["bucket"].encode(), b"<bucket>")
        for item in listing
    }


def test_split_hours_quarantine_the_same_records(twins, s3):
    whole, split, _expected, _runs = twins
    kept = quarantine_of(s3, split)
    assert kept == quarantine_of(s3, whole)
    assert any(name.endswith("stream-1-corrupt.gz") for name in kept)  # the unreadable object, copied as is


def test_rerun_of_a_split_hour_rewrites_nothing(twins, warehouse):
    _whole, split, _expected, _runs = twins
    before = dump_table(warehouse, split["table"], "tenant, event_id")
    assert run_hour(split["name"], HOURS[1]).state == "success"
    assert dump_table(warehouse, split["table"], "tenant, event_id") == before
    (_hour, _status, *_counts, inserted, updated, unchanged, _superseded) = load_hours(warehouse, split["name"])[1]
    assert (inserted, updated) == (0, 0) and unchanged > 0


def test_a_split_hours_stage_is_a_manifest_of_exactly_its_parts(twins, s3, warehouse):
    """The hour's stage (load_hours.stage_key) is a COPY manifest listing each part stage of the run once,
    mandatory, with its size: the load COPYs exactly those files and no other object under their prefix."""
    import json

    _whole, split, _expected, _runs = twins
    (stage,) = warehouse.execute(
        "SELECT stage_key FROM firehose_loader.load_hours WHERE stream = %s AND hour = %s", (split["name"], HOURS[0])
    ).fetchone()
    assert is_split_stage(stage)
    entries = json.loads(s3.get_object(Bucket=split["bucket"], Key=stage)["Body"].read())["entries"]
    folder = stage.rsplit("/", 1)[0] + "/"
    listing = s3.list_objects_v2(Bucket=split["bucket"], Prefix=folder)["Contents"]
    parts = {item["Key"]: item["Size"] for item in listing if ".part-" in item["Key"]}
    assert len(entries) == len(parts) >= 3
    assert {entry["url"]: entry["meta"]["content_length"] for entry in entries} == {
        f"s3://{split['bucket']}/{key}": size for key, size in parts.items()
    }
    assert all(entry["mandatory"] is True for entry in entries)


def test_a_part_takes_objects_as_they_are_when_they_changed_after_the_listing(s3):
    """Between extract_hour's listing and a part's read, one object is rewritten and one deleted:
    the part reads the new version, leaves the deleted one out, and its ledger entries say so."""
    from datetime import UTC, datetime

    from firehose_loader.extract import extract_or_split, extract_part
    from tests.integration.support import SIMPLE, ndjson, object_key, unlisted_stream

    hour = datetime(2026, 5, 9, 7, tzinfo=UTC)
    entry, stream = unlisted_stream(s3, "split_changed", **SIMPLE, split_above_bytes=1)
    bodies = {
        name: ndjson([{"id": f"{name}-{n}", "seq": 1, "note": "first"} for n in range(5)]) for name in ("a", "b", "c")
    }
    for name, body in bodies.items():
        s3.put_object(Bucket=entry["bucket"], Key=object_key(hour, name), Body=body)
    split = extract_or_split(s3, stream, hour, StageWriter("ingest", "manual__changed", "extract_hour", 1))
    assert [[item["key"] for item in part["objects"]] for part in split["parts"]] == [
        [object_key(hour, "a")],
        [object_key(hour, "b")],
        [object_key(hour, "c")],
    ]

    rewritten = ndjson([{"id": f"b-{n}", "seq": 2, "note": "second"} for n in range(7)])
    s3.put_object(Bucket=entry["bucket"], Key=object_key(hour, "b"), Body=rewritten)
    s3.delete_object(Bucket=entry["bucket"], Key=object_key(hour, "c"))

    writer = StageWriter("ingest", "manual__changed", "extract_part", 1)
    parts = [extract_part(s3, stream, part, writer) for part in split["parts"]]
    assert [[item["key"] for item in part["objects"]] for part in parts] == [
        [object_key(hour, "a")],
        [object_key(hour, "b")],
        [],
    ]
    (b_entry,) = parts[1]["objects"]
    assert (b_entry["records_raw"], b_entry["size"]) == (7, len(rewritten))
    assert parts[2]["stage_key"] is None and parts[2]["rows"] == 0
