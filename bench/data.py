"""The generated hour: made once per size into the local S3, reused while the generator's parameters match."""

from __future__ import annotations

import gzip
import json
import random
import time
from typing import Any

from bench.common import BUCKET, GENERATOR_VERSION, HOUR, hour_objects, prefix_for, s3_client, stream_name
from bench.config import config


def generation_marker(size: int) -> dict[str, Any]:
    from tools.simulate import BENCH_ENCODINGS, FIREHOSE_BUFFER_BYTES

    return {
        "generator_version": GENERATOR_VERSION,
        "records": size,
        "seed": config().seed,
        "hour": HOUR.isoformat(),
        "duplicate_rate": 0.03,
        "buffer_bytes": FIREHOSE_BUFFER_BYTES,
        "encodings": [list(item) for item in BENCH_ENCODINGS],
    }


def ensure_data(size: int) -> dict[str, Any]:
    """Generate the hour into S3 unless the same hour is already there; return its description."""
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
    for item in bench_hour(prefix_for(size), stream_name(size), HOUR, size, random.Random(config().seed)):
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
