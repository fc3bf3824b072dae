"""``naive``: pandas ``read_json(lines=True)`` per object, ``drop_duplicates`` after a stable sort, COPY."""

from __future__ import annotations

import gzip
import io
import json
import re
import time
from typing import Any

from bench.common import BUCKET, COLUMNS, KEY, ORDER, Stages, hour_objects, pg_connect, s3_client, table_for
from bench.worker import start_clock


def create_plain_table(conn: Any, schema: str, table: str) -> None:
    """The same column types ours creates, without the loader's provenance columns."""
    with conn.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        cursor.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}"')
        columns = ", ".join(f'"{name}" {"jsonb" if kind == "json" else kind}' for name, kind in COLUMNS.items())
        cursor.execute(f'CREATE TABLE "{schema}"."{table}" ({columns})')
    conn.commit()


def contender_naive(size: int) -> dict[str, Any]:
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
