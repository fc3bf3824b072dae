"""make bench: one Firehose hour through the real ingest path, beside the parse limit, a naive loader and dlt.

    make bench                                   # 100 k and 1 M records
    BENCH_FULL=1 make bench                      # and a 3.6 M-record shard-hour
    BENCH_SIZES=5000 BENCH_RESULTS=/tmp/r.md make bench

Each size is generated once into the local S3 (kept, and reused while the generator's
parameters match), then every contender runs in a fresh process of its own on the same
objects and writes into the same PostgreSQL, each into its own table:

- ``limit``: list + read the objects, ISA-L gunzip and orjson-parse every record; nothing kept.
- ``ours``: the DAG's three tasks as three processes, as Airflow runs them: ``ensure_tables``,
  ``extract_hour`` (list + read, decode + validate, dedupe, stage write) and ``load_and_merge``
  (COPY + merge with the ledger), calling the same functions the tasks call.
- ``split``: the same hour split into parts (``split_above_bytes``) as the DAG does above that size:
  list + split, ``extract_part`` processes two at a time, ``combine_parts``, ``load_and_merge``.
- ``dag``: the whole ingest DAG with ``airflow dags test`` (sensor, three tasks, Airflow's own overhead).
- ``deployed``: the same DAG as a deployment runs it: every task in a LocalExecutor process, against a
  running api-server (``airflow dags test --use-executor`` stands in for the scheduler).
- ``naive``: ``pandas.read_json(lines=True)`` per object, ``drop_duplicates`` on the key
  after sorting by the order column, COPY into a fresh table.
- ``dlt``: dlt's filesystem source (S3) -> postgres destination, ``write_disposition="merge"``,
  primary key ``event_id``, ``dedup_sort`` on ``received_at``.

Afterwards the tables are compared (row count, a checksum over key + order column, and one
over every column) and the results are printed and written to ``bench/results.md``.

Environment:
  BENCH_SIZES        comma-separated record counts (default 100000,1000000)
  BENCH_FULL=1       add 3600000 (a full shard-hour)
  BENCH_CONTENDERS   default limit,ours,split,dag,deployed,naive,dlt
  BENCH_SPLIT_BYTES  the split contender's split_above_bytes (default 268435456: a 3.6 M hour in 4 parts);
                     BENCH_SPLIT_WORKERS parts run at once (default 2), from BENCH_SPLIT_MIN records (default 3600000)
  BENCH_DLT_MAX      largest size dlt runs at (default 1000000; dlt takes minutes per million)
  BENCH_NAIVE_MAX    largest size the naive loader runs at (default 1000000: it needs ~7 GB per million)
  BENCH_BASELINE     a git ref (or a folder with plugins/ and include/): also run ``ours`` from there, once
                     (before/after); BENCH_BASELINE_MAX is the largest size it runs at (default 1000000)
  BENCH_DAG_MAX      largest size the whole-DAG runs (dag, deployed) run at (default 1000000)
  BENCH_MERGE_BASE   rows already in the target for the merge-cost run (e.g. 10000000; 0 = skip)
  BENCH_RESULTS      where to write the report (default bench/results.md)
  BENCH_SEED         the generator's seed (default 20260301): another seed is another hour of the same shape
  BENCH_REPEAT       runs of the limit, ours, dag and deployed per size, interleaved; medians are reported (default 1);
                     above 1 M records at most BENCH_REPEAT_LARGE (default 1)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import random
import re
import resource
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Workers run from a copy of this script (see worker_script) and are told where the project is.
ROOT = Path(os.environ.get("BENCH_ROOT") or Path(__file__).resolve().parents[1])
# The library under test: this tree's plugins/, or a baseline's (see BENCH_BASELINE) in its worker processes.
PLUGINS = Path(os.environ.get("BENCH_PLUGINS") or ROOT / "plugins")
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))
if str(ROOT) not in sys.path:  # tools/ (starting Airflow's api-server for the deployed contender)
    sys.path.append(str(ROOT))

BUCKET = "firehose-bench"
HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
HOUR_LENGTH = timedelta(hours=1)
# BENCH_SEED draws a different hour (same shape) for an independent check of the results.
SEED = int(os.environ.get("BENCH_SEED", "20260301"))
# Bump when the generated data changes: a stored hour with another version is generated again.
GENERATOR_VERSION = 1
# simulate.PRODUCT_EVENT_COLUMNS, written out: a BENCH_BASELINE tree may predate that name.
COLUMNS = {
    "event_id": "varchar(64)",
    "event_type": "varchar(64)",
    "user_id": "bigint",
    "received_at": "timestamptz",
    "amount": "numeric(12,2)",
    "is_test": "boolean",
    "properties": "json",
}
KEY = "event_id"
ORDER = "received_at"
# The loader's own tables (ledger, load_hours); a baseline from another commit gets its own schema.
# Schemas, the loader's stream names and stage keys start with this, so that runs side by side
# (a developer's `make bench` and the test suite's smoke run) do not touch each other's tables.
NAMESPACE = os.environ.get("BENCH_NAMESPACE", "bench")
if not re.fullmatch(r"[a-z][a-z0-9_]{0,20}", NAMESPACE):
    raise SystemExit(f"BENCH_NAMESPACE must be a short lowercase identifier, got {NAMESPACE!r}")
LOADER_SCHEMA = os.environ.get("BENCH_LOADER_SCHEMA", f"{NAMESPACE}_loader")
DEFAULT_CONTENDERS = ("limit", "ours", "split", "dag", "deployed", "naive", "dlt")
# The split contender: parts of at most this many bytes of objects, run this many at a time.
SPLIT_BYTES = int(os.environ.get("BENCH_SPLIT_BYTES", str(256 << 20)))
SPLIT_WORKERS = int(os.environ.get("BENCH_SPLIT_WORKERS", "2"))


# --- shared helpers ---------------------------------------------------------------------------------------------------


def prefix_for(size: int) -> str:
    return f"bench-{size}/"


def stream_name(size: int) -> str:
    return f"bench_{size}"


def loader_stream_name(size: int) -> str:
    """The stream name ours loads under (ledger rows, stage keys, the DAG id)."""
    return f"{NAMESPACE}_{size}"


def table_for(contender: str, size: int) -> tuple[str, str]:
    if contender.startswith("ours before"):
        contender = "ours_before"
    if contender == "dlt":  # dlt keeps its own state tables in the dataset: one per size
        contender = f"dlt_{size}"
    schema = f"{NAMESPACE}_" + re.sub(r"[^a-z0-9_]", "_", contender.lower())
    return schema, f"events_{size}"


def stream_entry(size: int, schema: str) -> dict[str, Any]:
    return {
        "name": loader_stream_name(size),
        "bucket": BUCKET,
        "prefix": prefix_for(size),
        "table": f"{schema}.events_{size}",
        "key": [KEY],
        "order_by": ORDER,
        "columns": COLUMNS,
        "settle_grace_minutes": 0,
        "staging_prefix": f"{NAMESPACE.replace('_', '-')}-staging/",
        "quarantine_prefix": f"{NAMESPACE.replace('_', '-')}-quarantine/",
    }


def s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def pg_connect(autocommit: bool = False) -> Any:
    import psycopg

    conn = psycopg.connect(os.environ["WAREHOUSE_URL"], autocommit=autocommit)
    conn.execute("SET TIME ZONE 'UTC'")
    if not autocommit:
        conn.commit()
    return conn


def hour_objects(client: Any, size: int) -> list[tuple[str, int]]:
    from firehose_loader.s3io import list_hour_objects

    return [(item.key, item.size) for item in list_hour_objects(client, BUCKET, prefix_for(size), HOUR)]


class PeakRss:
    """Peak memory of this process and its children: getrusage, plus a sampler for the tree's sum.

    The sampler sums proportional set sizes (PSS): the extract's decode workers are forked and
    share the parent's pages, which a sum of RSS would count once per process. Reading a process's
    PSS makes the kernel walk its page tables (~2 ms for 800 MB): sampled every 50 ms over a
    DAG run's dozen processes, the sampler took half a core from the run it measured (0.2 of a
    core at 250 ms, 0.1 at 500 ms), so it samples once a second. Memory in these runs rises and
    falls over seconds, and each process's own peak (ru_maxrss) is exact whatever the interval.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            try:
                total = sum(
                    process.memory_full_info().pss
                    for process in [me, *me.children(recursive=True)]
                    if process.is_running()
                )
            except psutil.Error:
                total = 0
            self.peak_tree = max(self.peak_tree, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        return max(own, children, self.peak_tree)


# --- data -------------------------------------------------------------------------------------------------------------


def generation_marker(size: int) -> dict[str, Any]:
    from tools.simulate import BENCH_ENCODINGS, FIREHOSE_BUFFER_BYTES

    return {
        "generator_version": GENERATOR_VERSION,
        "records": size,
        "seed": SEED,
        "hour": HOUR.isoformat(),
        "duplicate_rate": 0.03,
        "buffer_bytes": FIREHOSE_BUFFER_BYTES,
        "encodings": [list(item) for item in BENCH_ENCODINGS],
    }


def ensure_data(size: int) -> dict[str, Any]:
    """Generate the hour into S3 unless the same hour is already there; return its description."""
    import gzip

    from tools.simulate import bench_hour

    client = s3_client()
    try:
        client.head_bucket(Bucket=BUCKET)
    except Exception:
        client.create_bucket(Bucket=BUCKET)
    marker_key = f"{prefix_for(size)}_generated.json"
    wanted = generation_marker(size)
    try:
        stored = json.loads(client.get_object(Bucket=BUCKET, Key=marker_key)["Body"].read())
    except Exception:
        stored = None
    if stored is not None and stored.get("parameters") == wanted:
        listed = hour_objects(client, size)
        if len(listed) == stored["objects"]:
            print(f"  data: {size:,} records already in s3://{BUCKET}/{prefix_for(size)} (generated earlier)")
            return stored
    # Remove a stale or partial hour first.
    old = [key for key, _ in hour_objects(client, size)]
    for start in range(0, len(old), 1000):
        client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key} for key in old[start : start + 1000]]})
    started = time.perf_counter()
    objects = records = plain_bytes = stored_bytes = 0
    encodings: dict[str, int] = {}
    for item in bench_hour(prefix_for(size), stream_name(size), HOUR, size, random.Random(SEED)):
        client.put_object(Bucket=BUCKET, Key=item.key, Body=item.body)
        objects += 1
        records += len(item.records)
        plain_bytes += sum(len(record) for record in item.records)
        stored_bytes += len(item.body)
        compressed = item.body[:2] == b"\x1f\x8b"
        head = (gzip.decompress(item.body) if compressed else item.body)[:4096]
        kind = ("gzip " if compressed else "") + ("ndjson" if b"}\n{" in head else "concatenated")
        encodings[kind] = encodings.get(kind, 0) + 1
    description = {
        "parameters": wanted,
        "objects": objects,
        "records": records,
        "json_bytes": plain_bytes,
        "stored_bytes": stored_bytes,
        "encodings": encodings,
        "generation_seconds": round(time.perf_counter() - started, 1),
    }
    client.put_object(Bucket=BUCKET, Key=marker_key, Body=json.dumps(description).encode())
    print(
        f"  data: generated {records:,} records ({size:,} distinct) in {objects} objects, "
        f"{plain_bytes / 1e6:,.0f} MB of JSON, {stored_bytes / 1e6:,.0f} MB stored, "
        f"in {description['generation_seconds']} s"
    )
    return description


# --- contenders (each runs in its own process: `run.py worker NAME SIZE`) ---------------------------------------------


class Stages:
    """Wall-clock seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


def split_records_simply(data: bytes) -> list[bytes]:
    """Records of NDJSON or concatenated JSON: newlines first, else at ``}{`` (joining back pieces that fail)."""
    import orjson

    pieces = (
        data.split(b"\n") if b"}\n{" in data[:65536] or data.count(b"\n") > 1 else re.split(rb"(?<=\})(?=\{)", data)
    )
    out: list[bytes] = []
    carry = b""
    for piece in pieces:
        if not piece.strip() and not carry:
            continue
        candidate = carry + piece
        try:
            orjson.loads(candidate)
        except orjson.JSONDecodeError:
            carry = candidate
            continue
        out.append(candidate)
        carry = b""
    return out


def contender_limit(size: int) -> dict[str, Any]:
    import orjson
    from isal import igzip

    stages = Stages()
    client = s3_client()
    started = start_clock()
    listed = hour_objects(client, size)
    stages.add("list+read", time.perf_counter() - started)
    records = 0
    json_bytes = 0
    for key, _ in listed:
        mark = time.perf_counter()
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        stages.add("list+read", time.perf_counter() - mark)
        mark = time.perf_counter()
        data = igzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
        stages.add("gunzip", time.perf_counter() - mark)
        mark = time.perf_counter()
        loads = orjson.loads
        if b"}\n{" in data[:65536]:
            for line in data.split(b"\n"):
                if line:
                    loads(line)
                    records += 1
        else:
            # No delimiter: split at }{ and join back a piece that does not parse (the cut was inside a string).
            carry = b""
            for piece in re.split(rb"(?<=\})(?=\{)", data):
                candidate = carry + piece if carry else piece
                try:
                    loads(candidate)
                except orjson.JSONDecodeError:
                    carry = candidate
                    continue
                carry = b""
                records += 1
        stages.add("parse", time.perf_counter() - mark)
        json_bytes += len(data)
    return {
        "seconds": time.perf_counter() - started,
        "stages": stages.seconds,
        "records_parsed": records,
        "json_bytes": json_bytes,
    }


def install_stage_wrappers(stages: Stages) -> None:
    """Time the extract step's parts by wrapping the library's functions (works on old and new code alike)."""
    from firehose_loader import batch, ingest

    def wrap(module: Any, name: str, stage: str) -> None:
        original = getattr(module, name, None)
        if original is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            mark = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                stages.add(stage, time.perf_counter() - mark)

        setattr(module, name, timed)

    wrap(ingest, "list_hour_objects", "list+read")
    wrap(ingest, "read_object", "list+read")
    wrap(batch, "decode_object", "decode+validate")
    wrap(batch, "validate_records", "decode+validate")
    wrap(batch, "dedupe", "dedupe")
    wrap(ingest, "write_object", "stage write")
    wrap(ingest.pq, "write_table", "stage write")


def contender_ours_extract(size: int) -> dict[str, Any]:
    from firehose_loader import batch
    from firehose_loader.config import parse_config
    from firehose_loader.extract import extract_hour

    stream = parse_config(
        {"streams": [stream_entry(size, os.environ.get("BENCH_SCHEMA", table_for("ours", size)[0]))]}
    ).streams[0]
    client = s3_client()
    stages = Stages()
    started = start_clock()
    if hasattr(batch, "stage_clock"):
        with batch.stage_clock() as seconds:
            manifest = extract_hour(client, stream, HOUR, f"bench_{size}")
        stages.seconds.update(seconds)
    else:
        install_stage_wrappers(stages)
        manifest = extract_hour(client, stream, HOUR, f"bench_{size}")
    elapsed = time.perf_counter() - started
    manifest_path = Path(os.environ["BENCH_MANIFEST"])
    manifest_path.write_text(json.dumps(manifest))
    return {
        "seconds": elapsed,
        "stages": stages.seconds,
        "rows": manifest["rows"],
        "records_raw": sum(entry["records_raw"] for entry in manifest["objects"]),
        "records_duplicate": sum(entry["records_duplicate"] for entry in manifest["objects"]),
        "records_quarantined": sum(entry["records_quarantined"] for entry in manifest["objects"]),
    }


def split_stream(size: int) -> Any:
    from firehose_loader.config import parse_config

    entry = {**stream_entry(size, table_for("split", size)[0]), "split_above_bytes": SPLIT_BYTES}
    return parse_config({"streams": [entry]}).streams[0]


def contender_split_plan(size: int) -> dict[str, Any]:
    from firehose_loader.extract import extract_or_split

    client = s3_client()
    started = start_clock()
    plan = extract_or_split(client, split_stream(size), HOUR, f"bench_{size}")
    Path(os.environ["BENCH_MANIFEST"]).write_text(json.dumps(plan))
    return {"seconds": time.perf_counter() - started, "stages": {}, "parts": len(plan["parts"])}


def contender_split_part(size: int) -> dict[str, Any]:
    from firehose_loader.extract import extract_part

    plan = json.loads(Path(os.environ["BENCH_MANIFEST"]).read_text())
    part = plan["parts"][int(os.environ["BENCH_PART"])]
    client = s3_client()
    started = start_clock()
    result = extract_part(client, split_stream(size), part, f"bench_{size}")
    Path(os.environ["BENCH_PART_OUT"]).write_text(json.dumps(result))
    return {"seconds": time.perf_counter() - started, "stages": {}}


def contender_split_combine(size: int) -> dict[str, Any]:
    from firehose_loader.extract import combine_hour_parts

    plan = json.loads(Path(os.environ["BENCH_MANIFEST"]).read_text())
    parts = [json.loads(Path(path).read_text()) for path in os.environ["BENCH_PART_OUTS"].split(os.pathsep)]
    client = s3_client()
    started = start_clock()
    manifest = combine_hour_parts(lambda: client, split_stream(size), plan, parts, f"bench_{size}")
    Path(os.environ["BENCH_MANIFEST"]).write_text(json.dumps(manifest))
    return {"seconds": time.perf_counter() - started, "stages": {}}


def ours_context(size: int) -> tuple[Any, Any, Any]:
    from firehose_loader.config import Settings, parse_config
    from firehose_loader.warehouse.postgres import Postgres

    stream = parse_config(
        {"streams": [stream_entry(size, os.environ.get("BENCH_SCHEMA", table_for("ours", size)[0]))]}
    ).streams[0]
    return stream, Settings(loader_schema=LOADER_SCHEMA), Postgres()


def contender_ours_ensure_tables(size: int) -> dict[str, Any]:
    from firehose_loader.load import ensure_tables

    stream, settings, dialect = ours_context(size)
    started = start_clock()
    with pg_connect() as conn:
        ensure_tables(conn, stream, settings, dialect)
    return {"seconds": time.perf_counter() - started, "stages": {}}


def contender_ours_load(size: int) -> dict[str, Any]:
    from firehose_loader.load import load_and_merge, staged_batch

    stream, settings, dialect = ours_context(size)
    manifest = json.loads(Path(os.environ["BENCH_MANIFEST"]).read_text())
    started = start_clock()
    with pg_connect() as conn:
        summary = load_and_merge(
            conn, stream, settings, dialect, manifest, staged_batch(s3_client(), stream, manifest), f"bench_{size}"
        )
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "stages": {"COPY+merge": elapsed},
        "summary": {name: value for name, value in summary.items() if isinstance(value, int | str | None)},
    }


def create_plain_table(conn: Any, schema: str, table: str) -> None:
    """The same column types ours creates, without the loader's provenance columns."""
    with conn.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        cursor.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}"')
        columns = ", ".join(f'"{name}" {"jsonb" if kind == "json" else kind}' for name, kind in COLUMNS.items())
        cursor.execute(f'CREATE TABLE "{schema}"."{table}" ({columns})')
    conn.commit()


def contender_naive(size: int) -> dict[str, Any]:
    import gzip

    import pandas as pd

    stages = Stages()
    client = s3_client()
    started = start_clock()
    frames = []
    for key, _ in hour_objects(client, size):
        mark = time.perf_counter()
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        stages.add("list+read", time.perf_counter() - mark)
        mark = time.perf_counter()
        data = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
        if b"}\n{" not in data[:65536]:
            data = re.sub(rb"\}\s*\{", b"}\n{", data)  # concatenated records: one per line (unsafe for `}{` in strings)
        # precise_float: the default parser changes floats in nested values (0.9238 -> 0.9238000000000001).
        frame = pd.read_json(io.BytesIO(data), lines=True, dtype=False, convert_dates=False, precise_float=True)
        frame["_object"] = key
        frames.append(frame)
        stages.add("parse", time.perf_counter() - mark)
    mark = time.perf_counter()
    frame = pd.concat(frames, ignore_index=True)
    del frames
    frame[ORDER] = pd.to_datetime(frame[ORDER], utc=True, format="ISO8601")
    frame = frame.sort_values([ORDER, "_object"], kind="stable").drop_duplicates(subset=[KEY], keep="last")
    stages.add("dedupe", time.perf_counter() - mark)
    mark = time.perf_counter()
    out = frame[list(COLUMNS)].copy()
    out["properties"] = out["properties"].map(lambda value: None if value is None else json.dumps(value))
    out[ORDER] = out[ORDER].dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    out["user_id"] = out["user_id"].astype("Int64")
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, header=False)
    stages.add("to_csv", time.perf_counter() - mark)
    mark = time.perf_counter()
    schema, table = table_for("naive", size)
    with pg_connect() as conn:
        create_plain_table(conn, schema, table)
        with conn.cursor() as cursor, cursor.copy(f'COPY "{schema}"."{table}" FROM STDIN WITH (FORMAT csv)') as copy:
            copy.write(buffer.getvalue())
        conn.commit()
    stages.add("COPY", time.perf_counter() - mark)
    return {"seconds": time.perf_counter() - started, "stages": stages.seconds, "rows": len(out)}


def contender_dlt(size: int) -> dict[str, Any]:
    # No telemetry (this machine reaches no such service), and no config folders in the project.
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import gzip

    import dlt
    import orjson
    from dlt.sources.credentials import AwsCredentials
    from dlt.sources.filesystem import filesystem

    schema, table = table_for("dlt", size)
    work = Path(tempfile.mkdtemp(prefix="bench-dlt-"))
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ["DLT_DATA_DIR"] = str(work)
    with pg_connect(autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_staging" CASCADE')

    @dlt.transformer(name=table)
    def firehose_records(items: Any) -> Any:
        # dlt's read_jsonl cannot read Firehose's concatenated records ({...}{...}) and only
        # gunzips keys ending in .gz: read the bytes and split them, as the naive loader does.
        for item in items:
            body = item.read_bytes()
            data = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            chunk = []
            for record in split_records_simply(data):
                chunk.append(orjson.loads(record))
                if len(chunk) == 10_000:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    credentials = AwsCredentials(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name="us-east-1",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    )
    folder = f"s3://{BUCKET}/{prefix_for(size)}{HOUR:%Y/%m/%d/%H}/"
    resource = filesystem(bucket_url=folder, credentials=credentials, file_glob="*") | firehose_records
    resource.apply_hints(
        primary_key=KEY,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns={
            KEY: {"data_type": "text", "nullable": False, "precision": 64},
            "event_type": {"data_type": "text", "precision": 64},
            "user_id": {"data_type": "bigint"},
            ORDER: {"data_type": "timestamp", "timezone": True, "dedup_sort": "desc", "nullable": False},
            "amount": {"data_type": "decimal", "precision": 12, "scale": 2},
            "is_test": {"data_type": "bool"},
            "properties": {"data_type": "json"},
        },
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_dlt_{size}",
        # dlt insists on a password; the local server trusts 127.0.0.1 and ignores it.
        destination=dlt.destinations.postgres(credentials=with_password(os.environ["WAREHOUSE_URL"])),
        dataset_name=schema,
        pipelines_dir=str(work / "pipelines"),
    )
    stages = Stages()
    started = start_clock()
    mark = time.perf_counter()
    pipeline.extract(resource)
    stages.add("extract", time.perf_counter() - mark)
    mark = time.perf_counter()
    pipeline.normalize()
    stages.add("normalize", time.perf_counter() - mark)
    mark = time.perf_counter()
    info = pipeline.load()
    stages.add("load+merge", time.perf_counter() - mark)
    info.raise_on_failed_jobs()
    seconds = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    return {"seconds": seconds, "stages": stages.seconds, "dlt_version": dlt.__version__}


def with_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is not None:
        return url
    netloc = parts.netloc.replace("@", ":unused@", 1) if "@" in parts.netloc else parts.netloc
    return urlunsplit(parts._replace(netloc=netloc))


WORKERS = {
    "limit": "contender_limit",
    "ours:ensure_tables": "contender_ours_ensure_tables",
    "ours:extract": "contender_ours_extract",
    "ours:load": "contender_ours_load",
    "split:plan": "contender_split_plan",
    "split:part": "contender_split_part",
    "split:combine": "contender_split_combine",
    "naive": "contender_naive",
    "dag": "contender_dag",
    "deployed": "contender_deployed",
    "dlt": "contender_dlt",
}


_work_cpu_start: float | None = None


def start_clock() -> float:
    """Start timing a contender's work (after its imports): returns the wall clock, notes the CPU clock."""
    global _work_cpu_start
    _work_cpu_start = cpu_seconds()
    return time.perf_counter()


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def worker_main(name: str, size: int, out: str) -> None:
    with PeakRss() as rss:
        result = globals()[WORKERS[name]](size)
        result["cpu_seconds"] = cpu_seconds() - (_work_cpu_start or 0.0)
    result["peak_rss"] = rss.peak
    Path(out).write_text(json.dumps(result, default=str))


# --- orchestration ----------------------------------------------------------------------------------------------------


_worker_copy: Path | None = None


def worker_script() -> Path:
    """A copy of this script taken when the run started: workers are not affected by edits made meanwhile."""
    global _worker_copy
    if _worker_copy is None:
        folder = Path(tempfile.mkdtemp(prefix="bench-script-"))
        _worker_copy = folder / "run.py"
        shutil.copyfile(Path(__file__).resolve(), _worker_copy)
    return _worker_copy


def deployed_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child that should import as a deployed worker does."""
    environment = {**os.environ, **(extra or {})}
    # Let Python cache compiled modules (this sandbox sets PYTHONDONTWRITEBYTECODE, which makes every
    # process compile pandas & co. again, seconds each): a deployed worker imports from bytecode.
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def run_worker(
    name: str, size: int, env: dict[str, str] | None = None, pythonpath: str | None = None
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    environment = deployed_environment(env)
    environment["BENCH_PLUGINS"] = pythonpath or str(PLUGINS)
    environment["BENCH_ROOT"] = str(ROOT)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath or str(PLUGINS), str(ROOT)]))
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, str(worker_script()), "worker", name, str(size), out],
        env=environment,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{name} at {size:,} failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-8000:]}")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    result["process_seconds"] = wall
    return result


def prepare_ours(schema: str, size: int, loader_schema: str = LOADER_SCHEMA) -> None:
    with pg_connect(autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{schema}"."events_{size}"')
        for table in ("ledger", "load_hours"):
            exists = conn.execute("SELECT to_regclass(%s)", (f"{loader_schema}.{table}",)).fetchone()[0]
            if exists:
                conn.execute(f"DELETE FROM {loader_schema}.{table} WHERE stream = %s", (loader_stream_name(size),))


def run_ours(size: int, label: str = "ours", pythonpath: str | None = None) -> dict[str, Any]:
    """The DAG's tasks in order, each in a process of its own (as Airflow runs them)."""
    schema = table_for(label, size)[0]
    loader_schema = LOADER_SCHEMA if pythonpath is None else f"{LOADER_SCHEMA}_baseline"
    prepare_ours(schema, size, loader_schema)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        manifest = handle.name
    env = {"BENCH_MANIFEST": manifest, "BENCH_SCHEMA": schema, "BENCH_LOADER_SCHEMA": loader_schema}
    phases = {}
    for phase in ("ensure_tables", "extract", "load"):
        phases[phase] = run_worker(f"ours:{phase}", size, env, pythonpath)
    os.unlink(manifest)
    stages = {**phases["extract"]["stages"], **phases["load"]["stages"]}
    return {
        "seconds": sum(phase["process_seconds"] for phase in phases.values()),
        "work_seconds": sum(phase["seconds"] for phase in phases.values()),
        "transform_seconds": phases["extract"]["seconds"],
        "cpu_seconds": sum(phase["cpu_seconds"] for phase in phases.values()),
        "transform_cpu_seconds": phases["extract"]["cpu_seconds"],
        "stages": stages,
        "peak_rss": max(phase["peak_rss"] for phase in phases.values()),
        "phases": {
            name: {key: phase[key] for key in ("seconds", "process_seconds", "peak_rss", "cpu_seconds")}
            for name, phase in phases.items()
        },
        "extract": phases["extract"],
        "summary": phases["load"].get("summary"),
    }


def run_split(size: int) -> dict[str, Any]:
    """A split hour as the DAG runs it: extract_hour lists and splits, the parts run SPLIT_WORKERS at a
    time (as many worker slots as cores), combine_parts dedupes across them, then load_and_merge."""
    from concurrent.futures import ThreadPoolExecutor

    schema = table_for("split", size)[0]
    prepare_ours(schema, size)
    folder = Path(tempfile.mkdtemp(prefix="bench-split-"))
    env = {"BENCH_MANIFEST": str(folder / "manifest.json"), "BENCH_SCHEMA": schema}
    started = time.perf_counter()
    phases = {"ensure_tables": run_worker("ours:ensure_tables", size, env), "plan": run_worker("split:plan", size, env)}
    count = phases["plan"]["parts"]
    outputs = [str(folder / f"part-{index}.json") for index in range(count)]
    parts_started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SPLIT_WORKERS) as pool:
        part_runs = list(
            pool.map(
                lambda index: run_worker(
                    "split:part", size, {**env, "BENCH_PART": str(index), "BENCH_PART_OUT": outputs[index]}
                ),
                range(count),
            )
        )
    parts_seconds = time.perf_counter() - parts_started
    phases["combine"] = run_worker("split:combine", size, {**env, "BENCH_PART_OUTS": os.pathsep.join(outputs)})
    phases["load"] = run_worker("ours:load", size, env)
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    every = [*phases.values(), *part_runs]
    return {
        "seconds": seconds,
        "cpu_seconds": sum(run["cpu_seconds"] for run in every),
        "peak_rss": max(run["peak_rss"] for run in every),
        "stages": {
            "list+split": phases["plan"]["seconds"],
            f"{count} part{'' if count == 1 else 's'}, {SPLIT_WORKERS} at a time": parts_seconds,
            "combine": phases["combine"]["seconds"],
            "COPY+merge": phases["load"]["seconds"],
        },
        "parts": count,
        "part_peak_rss": max(run["peak_rss"] for run in part_runs),
        "combine_peak_rss": phases["combine"]["peak_rss"],
        "load_peak_rss": phases["load"]["peak_rss"],
    }


def contender_dag(size: int) -> dict[str, Any]:
    """The whole ingest DAG for the hour with `airflow dags test`, as a user runs it (tasks run in that process)."""
    return whole_dag_run(size, "dag", [])


def contender_deployed(size: int) -> dict[str, Any]:
    """The whole ingest DAG as a deployment runs it: each task in a LocalExecutor process, against a running api-server.

    `airflow dags test --use-executor` stands in for the scheduler (it queues each ready task on the
    executor and polls once a second); the api-server is started beforehand (running_api_server), as a
    deployment's is always up.
    """
    return whole_dag_run(size, "deployed", ["--use-executor"])


def whole_dag_run(size: int, label: str, options: list[str]) -> dict[str, Any]:
    import yaml

    schema = table_for(label, size)[0]
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
    streams_file = folder / "streams.yml"
    streams_file.write_text(
        yaml.safe_dump({"loader_schema": LOADER_SCHEMA, "streams": [stream_entry(size, schema)]}, sort_keys=False)
    )
    dag_id = f"ingest_{loader_stream_name(size)}"
    command = ["airflow", "dags", "test", *options, dag_id, (HOUR + HOUR_LENGTH).isoformat()]
    environment = deployed_environment({"STREAMS_CONFIG": str(streams_file)})
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    started = start_clock()
    completed = subprocess.run(command, env=environment, cwd=str(ROOT), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    log = folder / "dags-test.log"
    log.write_text(completed.stdout + completed.stderr)
    with pg_connect(autocommit=True) as conn:
        status = conn.execute(
            f"SELECT status FROM {LOADER_SCHEMA}.load_hours WHERE stream = %s AND hour = %s",
            (loader_stream_name(size), HOUR.replace(tzinfo=None)),
        ).fetchone()
    if completed.returncode != 0 or status is None or status[0] != "loaded":
        raise RuntimeError(f"airflow dags test failed (exit {completed.returncode}, load_hours {status}); see {log}")
    shutil.rmtree(folder, ignore_errors=True)
    stages = {}
    run_seconds = dag_run_seconds(completed.stdout + completed.stderr)
    if run_seconds is not None:
        stages["the DAG run (created to finished)"] = run_seconds
        stages["CLI start + exit"] = seconds - run_seconds
    return {"seconds": seconds, "stages": stages, "command": " ".join(command)}


# `airflow dags test` logs an ISO timestamp at the start of each line.
DAG_RUN_CREATED = re.compile(r"^(\S+)\s+\[info\s*\]\s+Created dag run\.", re.MULTILINE)
DAG_RUN_FINISHED = re.compile(r"^(\S+)\s+\[info\s*\]\s+DagRun Finished:", re.MULTILINE)


def dag_run_seconds(log: str) -> float | None:
    """Seconds from the DAG run's creation to its end, from the log of `airflow dags test` (None if not found).

    The rest of the command's time is Airflow's CLI starting (and filling its DAG bag) and exiting,
    which a deployment's running scheduler does not pay per run.
    """
    created, finished = DAG_RUN_CREATED.search(log), DAG_RUN_FINISHED.search(log)
    if created is None or finished is None:
        return None
    started_at = datetime.fromisoformat(created.group(1).replace("Z", "+00:00"))
    return (datetime.fromisoformat(finished.group(1).replace("Z", "+00:00")) - started_at).total_seconds()


def baseline_tree(ref: str) -> str:
    """plugins/ and include/ of a git ref (or of a folder holding them), as a plugins path."""
    if Path(ref).is_dir():
        return str(Path(ref).resolve() / "plugins")
    folder = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "plugins", "include"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return str(folder / "plugins")


def table_checks(label: str, size: int) -> dict[str, Any] | None:
    schema, table = table_for(label, size)
    with pg_connect(autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()[0] is None:
            return None
        row = conn.execute(
            f"""
            SELECT count(*), count(DISTINCT {KEY}),
                   sum(('x' || substr(md5({KEY} || '|' || to_char({ORDER}, 'YYYY-MM-DD"T"HH24:MI:SS.US')), 1, 15))::bit(60)::bigint),
                   sum(('x' || substr(md5(concat_ws('|', {KEY}, to_char({ORDER}, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                        event_type, user_id::text, amount::numeric(12,2)::text, is_test::text,
                        properties::jsonb::text)), 1, 15))::bit(60)::bigint)
            FROM "{schema}"."{table}"
            """
        ).fetchone()
    return {"rows": row[0], "keys": row[1], "key_order_checksum": str(row[2]), "row_checksum": str(row[3])}


def machine() -> dict[str, str]:
    def read(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
        except Exception:
            return "?"

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    versions = {}
    for package in ("pyarrow", "pandas", "orjson", "isal", "boto3", "psycopg", "moto", "dlt", "apache-airflow"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "not installed"
    with pg_connect(autocommit=True) as conn:
        versions["PostgreSQL"] = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "nproc": read(["nproc"]),
        "memory": memory,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": ", ".join(f"{name} {value}" for name, value in versions.items()),
    }


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def fmt_rss(value: int | None) -> str:
    return "-" if not value else f"{value / 2**30:.2f} GB"


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median end-to-end time, with the medians of the other measures of all runs."""
    ordered = sorted(results, key=lambda result: result["seconds"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["runs"] = len(results)
    chosen["all_seconds"] = [round(result["seconds"], 1) for result in results]
    for measure in ("seconds", "cpu_seconds", "transform_seconds", "transform_cpu_seconds"):
        values = [result[measure] for result in results if result.get(measure) is not None]
        if values:
            chosen[f"median_{measure}"] = statistics.median(values)
    return chosen


# The contenders that run BENCH_REPEAT times (the others once).
REPEATED = ("limit", "ours", "dag", "deployed")


def run_whole_dag(size: int, label: str) -> dict[str, Any]:
    prepare_ours(table_for(label, size)[0], size)
    if label == "dag":
        return run_worker(label, size)
    with running_api_server() as environment:
        return run_worker(label, size, environment)


@contextlib.contextmanager
def running_api_server() -> Iterator[dict[str, str]]:
    """An Airflow api-server on a free port, its execution API warmed up: yields the environment of its clients.

    The first request to the execution API builds its versioned routes (seconds); a deployment's
    api-server has done that long before a run, so the bench does it before the clock starts.
    """
    from tools import airflow_local

    port = airflow_local.free_port()
    base_url = f"http://127.0.0.1:{port}"
    environment = {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # The executor signs each task's token; the api-server must verify it with the same secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
    }
    env = deployed_environment(environment)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = Path(tempfile.mkdtemp(prefix="bench-api-server-")) / "api-server.log"
    process = airflow_local.start([str(Path(sys.executable).parent / "airflow"), "api-server"], env, log)
    try:
        airflow_local.wait_until(
            lambda: airflow_local.http_status(f"{base_url}/execution/health") == 200,
            "the api-server",
            180,
            process,
            log,
        )
        yield environment
    finally:
        airflow_local.stop_tree(process.pid, grace=20)


def run_size(size: int, contenders: list[str], baseline: str | None, repeat: int) -> dict[str, Any]:
    print(f"\n== {size:,} records (load average {load_average()}) ==")
    data = ensure_data(size)
    dlt_max = int(os.environ.get("BENCH_DLT_MAX", "1000000"))
    naive_max = int(os.environ.get("BENCH_NAIVE_MAX", "1000000"))
    runs: list[tuple[str, Any]] = []
    for contender in contenders:
        if contender == "dlt" and size > dlt_max:
            print(f"  dlt: skipped above BENCH_DLT_MAX={dlt_max:,}")
            continue
        if contender == "naive" and size > naive_max:
            print(f"  naive: skipped above BENCH_NAIVE_MAX={naive_max:,}")
            continue
        if contender in ("dag", "deployed"):
            if size > int(os.environ.get("BENCH_DAG_MAX", "1000000")):
                print(f"  {contender}: skipped above BENCH_DAG_MAX")
                continue
            runs.append((contender, lambda contender=contender: run_whole_dag(size, contender)))
            continue
        if contender == "split":
            if size < int(os.environ.get("BENCH_SPLIT_MIN", "3600000")):
                print("  split: skipped below BENCH_SPLIT_MIN")
                continue
            runs.append(("split", lambda: run_split(size)))
            continue
        if contender == "ours":
            runs.append(("ours", lambda: run_ours(size)))
            if baseline and size <= int(os.environ.get("BENCH_BASELINE_MAX", "1000000")):
                tree = baseline_tree(baseline)
                label = f"ours before ({Path(baseline).name if Path(baseline).is_dir() else baseline})"
                runs.append((label, lambda tree=tree, label=label: run_ours(size, label, tree)))
        else:
            runs.append((contender, lambda contender=contender: run_worker(contender, size)))
    # The limit, ours and the whole DAG run `repeat` times, interleaved so that they share the machine's load;
    # the others run once. Each reports its median run.
    attempts: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in runs}
    if size > 1_000_000:
        repeat = min(repeat, int(os.environ.get("BENCH_REPEAT_LARGE", "1")))
    for round_number in range(repeat):
        for label, run in runs:
            if round_number and label not in REPEATED:
                continue
            load_before = load_average()
            result = run()
            result["load_before"] = load_before
            attempts[label].append(result)
            print(
                f"  {label:<14} {result['seconds']:8.1f} s  CPU {result.get('cpu_seconds', 0):6.1f} s  "
                f"peak RSS {fmt_rss(result['peak_rss'])}  (load {load_before})"
            )
    results = {label: median_result(attempts[label]) for label, _ in runs}
    checks = {label: table_checks(label, size) for label in results if label != "limit"}
    return {"size": size, "data": data, "results": results, "checks": {k: v for k, v in checks.items() if v}}


def merge_cost(size: int, base_rows: int) -> dict[str, Any]:
    """Merge the staged hour into a target that already holds ``base_rows`` other keys (index on the key)."""
    from firehose_loader.config import Settings, parse_config
    from firehose_loader.extract import extract_hour
    from firehose_loader.load import ensure_tables, load_and_merge, staged_batch
    from firehose_loader.warehouse.postgres import Postgres

    schema = f"{NAMESPACE}_big"
    entry = stream_entry(size, schema)
    stream = parse_config({"streams": [entry]}).streams[0]
    settings = Settings(loader_schema=LOADER_SCHEMA)
    table = f'"{schema}"."events_{size}"'
    print(f"\n== merge cost: {size:,}-record hour into a table of {base_rows:,} rows ==")
    timings: dict[str, Any] = {"base_rows": base_rows, "size": size}
    with pg_connect(autocommit=True) as conn:
        existing = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL AND (SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)) >= %s",
            (table, table, base_rows * 0.99),
        ).fetchone()[0]
    prepare_ours_ledger(size)
    if not existing:
        with pg_connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        with pg_connect() as conn:
            ensure_tables(conn, stream, settings, Postgres())
        mark = time.perf_counter()
        with pg_connect(autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute(f'DROP INDEX IF EXISTS "{schema}"."events_{size}__firehose_key"')
            conn.execute(
                f"""
                INSERT INTO {table}
                SELECT 'old-' || lpad(n::text, 9, '0'),
                       (ARRAY['page_view','click','signup','purchase','logout'])[1 + n % 5],
                       n % 5000000,
                       timestamptz '2026-02-01' + n * interval '250 milliseconds',
                       CASE WHEN n % 5 = 3 THEN (n % 100000) / 100.0 END,
                       n % 50 = 0,
                       jsonb_build_object('page', '/docs', 'session', jsonb_build_object('id', md5(n::text), 'sequence', n % 400),
                                          'text', repeat(md5(n::text), 1 + n % 8)),
                       'firehose/older/object-' || (n / 20000),
                       n % 20000 * 700
                FROM generate_series(1, {base_rows}) AS n
                """
            )
            conn.execute(f'CREATE INDEX "events_{size}__firehose_key" ON {table} ("event_id")')
            conn.execute(f"VACUUM ANALYZE {table}")
        timings["fill_seconds"] = round(time.perf_counter() - mark, 1)
        print(f"  filled {base_rows:,} rows in {timings['fill_seconds']} s")
    with pg_connect(autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table} WHERE event_id NOT LIKE 'old-%'")
        conn.execute(f"VACUUM ANALYZE {table}")
        timings["table_bytes_before"] = conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0]
    client = s3_client()
    manifest = extract_hour(client, stream, HOUR, f"bench_big_{size}")
    for attempt in ("first load (all inserts)", "rerun (all unchanged)"):
        load = load_average()
        mark = time.perf_counter()
        with pg_connect() as conn:
            summary = load_and_merge(
                conn, stream, settings, Postgres(), manifest, staged_batch(client, stream, manifest), "bench_big"
            )
        seconds = time.perf_counter() - mark
        timings[attempt] = {
            "seconds": round(seconds, 1),
            "load": load,
            "inserted": summary.get("records_inserted"),
            "unchanged": summary.get("records_unchanged"),
        }
        print(f"  {attempt}: {seconds:.1f} s (load {load}) {timings[attempt]}")
    with pg_connect(autocommit=True) as conn:
        timings["rows_after"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        plan = conn.execute(
            f"EXPLAIN SELECT 1 FROM {table} t WHERE EXISTS (SELECT 1 FROM (VALUES ('evt-x')) x(event_id) "
            "WHERE x.event_id = t.event_id)"
        ).fetchall()
        timings["plan"] = "\n".join(row[0] for row in plan)
    return timings


def prepare_ours_ledger(size: int) -> None:
    with pg_connect(autocommit=True) as conn:
        for name in ("ledger", "load_hours"):
            if conn.execute("SELECT to_regclass(%s)", (f"{LOADER_SCHEMA}.{name}",)).fetchone()[0]:
                conn.execute(f"DELETE FROM {LOADER_SCHEMA}.{name} WHERE stream = %s", (loader_stream_name(size),))


# --- report -----------------------------------------------------------------------------------------------------------

STAGE_ORDER = ("list+read", "decode+validate", "dedupe", "stage write", "COPY+merge")


def size_report(run: dict[str, Any]) -> tuple[list[str], bool]:
    size = run["size"]
    data = run["data"]
    results = run["results"]
    lines = [
        f"### {size:,} records",
        "",
        f"{data['records']:,} records ({size:,} distinct keys, {data['records'] - size:,} duplicates) in "
        f"{data['objects']} objects ({', '.join(f'{count} {kind}' for kind, count in sorted(data['encodings'].items()))}); "
        f"{data['json_bytes'] / 1e6:,.0f} MB of JSON, {data['stored_bytes'] / 1e6:,.0f} MB in S3.",
        "",
    ]
    json_mb = data["json_bytes"] / 1e6
    for label, result in results.items():
        if not label.startswith("ours"):
            continue
        stages = result["stages"]
        extract = result["extract"]
        lines += [
            f"**{label}** (the DAG's tasks, each in its own process):",
            "",
            "| records | MB | "
            + " | ".join(STAGE_ORDER)
            + " | transform (extract task) | end to end | records/s | peak RSS |",
            "|---:|---:|" + "---:|" * len(STAGE_ORDER) + "---:|---:|---:|---:|",
            f"| {data['records']:,} | {json_mb:,.0f} | "
            + " | ".join(f"{stages.get(stage, 0):.1f}" for stage in STAGE_ORDER)
            + f" | {result['transform_seconds']:.1f} s | {result['seconds']:.1f} s"
            f" | {data['records'] / result['seconds']:,.0f} | {fmt_rss(result['peak_rss'])} |",
            "",
            f"(the median run of {result['runs']}: end to end {', '.join(map(str, result['all_seconds']))} s). "
            "Stage seconds are wall time in the extract task's main thread (list+read is time spent waiting "
            "for a read; reading and gunzip run in a reader thread beside decoding), and COPY+merge the load "
            "task's `load_and_merge`. Per task process: "
            + "; ".join(
                f"{name} {phase['process_seconds']:.1f} s (work {phase['seconds']:.1f} s, "
                f"CPU {phase['cpu_seconds']:.1f} s, peak RSS {fmt_rss(phase['peak_rss'])})"
                for name, phase in result["phases"].items()
            )
            + f". Rows staged {extract['rows']:,}, duplicates removed {extract['records_duplicate']:,}, "
            f"quarantined {extract['records_quarantined']:,}.",
            "",
        ]
    split = results.get("split")
    if split:
        lines += [
            f"**split** (the same hour as the DAG runs it above `split_above_bytes` = {SPLIT_BYTES:,} bytes): "
            f"{split['parts']} part{'' if split['parts'] == 1 else 's'}, {SPLIT_WORKERS} at a time; "
            + ", ".join(f"{name} {value:.1f} s" for name, value in split["stages"].items())
            + f"; end to end {split['seconds']:.1f} s. Peak RSS per task: parts {fmt_rss(split['part_peak_rss'])}, "
            f"combine {fmt_rss(split['combine_peak_rss'])}, load {fmt_rss(split['load_peak_rss'])}.",
            "",
        ]
    ours = results.get("ours")
    lines += [
        "| contender | seconds (median) | runs | records/s | time ratio to ours | CPU s | peak RSS | stages (s) "
        "| load avg before |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, result in results.items():
        seconds = result["median_seconds"]
        ratio = f"{seconds / ours['median_seconds']:.2f}x" if ours else "-"
        stage_text = ", ".join(f"{name} {value:.1f}" for name, value in result["stages"].items())
        cpu = result.get("median_cpu_seconds")
        lines.append(
            f"| {label} | {seconds:.1f} | {result['runs']} | {data['records'] / seconds:,.0f} | {ratio} | "
            f"{'-' if cpu is None else f'{cpu:.1f}'} | {fmt_rss(result['peak_rss'])} | {stage_text} "
            f"| {result.get('load_before', '-')} |"
        )
    lines.append("")
    if ours and "limit" in results:
        limit = results["limit"]
        limit_parse = limit["stages"].get("gunzip", 0) + limit["stages"].get("parse", 0)
        transform = ours["median_transform_seconds"]
        transform_cpu = ours["median_transform_cpu_seconds"]
        lines += [
            f"Transform (our extract task: list + read + decode + validate + dedupe + stage, median of "
            f"{ours['runs']}) {transform:.1f} s wall, {transform_cpu:.1f} s CPU; the limit (list + read + gunzip + "
            f"parse, median of {limit['runs']}) {limit['median_seconds']:.1f} s wall, "
            f"{limit['median_cpu_seconds']:.1f} s CPU ({limit_parse:.1f} s of it gunzip + parse). Ours runs at "
            f"**{limit['median_seconds'] / transform:.0%}** of the limit's throughput by wall time and "
            f"**{limit['median_cpu_seconds'] / transform_cpu:.0%}** by CPU time (the target is 50%).",
            "",
        ]
    checks = run["checks"]
    agree = True
    if checks:
        lines += [
            "| table | rows | distinct keys | checksum (key + order) | checksum (all columns) |",
            "|---|---:|---:|---|---|",
        ]
        for label, check in checks.items():
            lines.append(
                f"| {label} | {check['rows']:,} | {check['keys']:,} | {check['key_order_checksum']} | {check['row_checksum']} |"
            )
        first = next(iter(checks.values()))
        agree = (
            all(
                (check["rows"], check["keys"], check["key_order_checksum"], check["row_checksum"])
                == (first["rows"], first["keys"], first["key_order_checksum"], first["row_checksum"])
                for check in checks.values()
            )
            and first["rows"] == first["keys"] == size
        )
        lines += [
            "",
            f"Row checks: **{'all tables agree' if agree else 'TABLES DIFFER'}** "
            f"(expected {size:,} rows, one per key).",
            "",
        ]
    if "limit" in results:
        parsed = results["limit"]["records_parsed"]
        if parsed != data["records"]:
            agree = False
            lines.append(f"The limit parsed {parsed:,} records, expected {data['records']:,}.")
    return lines, agree


def write_report(path: Path, runs: list[dict[str, Any]], merge: dict[str, Any] | None, command: str) -> bool:
    info = machine()
    lines = [
        "# make bench: results",
        "",
        f"Written by `bench/run.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Each contender runs in a fresh",
        "process (ours: one process per DAG task) on the same objects in the local S3 (moto server) and",
        "writes into the same PostgreSQL. Peak RSS is the larger of the process's ru_maxrss and a sampler's",
        "sum over its process tree (of PSS, so that forked decode workers' shared pages count once); it does",
        "not include the S3 or PostgreSQL servers.",
        "",
        f"- machine: {info['nproc']} cores ({info['cpu']}), {info['memory']}, Linux {info['kernel']}, "
        f"Python {info['python']}",
        f"- versions: {info['versions']}",
        f"- data: seed {SEED} (`BENCH_SEED`), hour {HOUR.isoformat()}",
        f"- load average when the report was written: {load_average()} (other work shares this machine)",
        "",
        "Reproduce:",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    agree_all = True
    for run in runs:
        section, agree = size_report(run)
        agree_all &= agree
        lines += section
    if merge:
        lines += [
            f"### Merge cost: the {merge['size']:,}-record hour into a table of {merge['base_rows']:,} rows",
            "",
            "| merge | seconds | inserted | unchanged | load avg before |",
            "|---|---:|---:|---:|---|",
        ]
        for attempt in ("first load (all inserts)", "rerun (all unchanged)"):
            item = merge[attempt]
            lines.append(
                f"| {attempt} | {item['seconds']} | {item['inserted']:,} | {item['unchanged']:,} | {item['load']} |"
            )
        lines += [
            "",
            f"Rows after: {merge['rows_after']:,}. The key lookup's plan:",
            "",
            "```",
            merge["plan"],
            "```",
            "",
        ]
    extra = ROOT / "bench" / "NOTES.md"
    if extra.exists() and path.resolve() == (ROOT / "bench" / "results.md").resolve():
        lines += [extra.read_text().strip(), ""]
    path.write_text("\n".join(lines))
    return agree_all


def main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "worker":
        worker_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    for name in ("AWS_ENDPOINT_URL", "WAREHOUSE_URL"):
        if name not in os.environ:
            print(f"{name} is not set: run `make bench` (or `make stack && . .local/stack.env` first)", file=sys.stderr)
            return 2
    sizes = [int(size) for size in os.environ.get("BENCH_SIZES", "100000,1000000").split(",") if size.strip()]
    if os.environ.get("BENCH_FULL") == "1" and 3_600_000 not in sizes:
        sizes.append(3_600_000)
    contenders = [name.strip() for name in os.environ.get("BENCH_CONTENDERS", ",".join(DEFAULT_CONTENDERS)).split(",")]
    unknown = set(contenders) - set(DEFAULT_CONTENDERS)
    if unknown:
        print(f"unknown contender(s) {sorted(unknown)}; known: {DEFAULT_CONTENDERS}", file=sys.stderr)
        return 2
    baseline = os.environ.get("BENCH_BASELINE") or None
    repeat = int(os.environ.get("BENCH_REPEAT", "1"))
    results_path = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results.md"))
    merge_base = int(os.environ.get("BENCH_MERGE_BASE", "0"))
    settings = {
        name: os.environ[name]
        for name in sorted(os.environ)
        if name.startswith("BENCH_") and name not in ("BENCH_RESULTS", "BENCH_MANIFEST", "BENCH_SCHEMA")
    }
    command = " ".join([*(f"{name}={shlex.quote(value)}" for name, value in settings.items()), "make bench"])
    print(f"bench: sizes {sizes}, contenders {contenders}, load average {load_average()}")
    runs = [run_size(size, contenders, baseline, repeat) for size in sizes]
    merge_size = int(os.environ.get("BENCH_MERGE_SIZE", "1000000"))
    merge = merge_cost(merge_size if merge_size in sizes else max(sizes), merge_base) if merge_base else None
    agree = write_report(results_path, runs, merge, command)
    print()
    print(results_path.read_text())
    if not agree:
        print("bench: the contenders' tables do not agree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
