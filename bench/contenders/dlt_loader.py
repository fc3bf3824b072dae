"""``dlt``: dlt's filesystem source (S3) -> postgres destination, merge (delete-insert) on ``event_id``.

Named dlt_loader, not dlt, so that it never stands in for the dlt package.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BUCKET, HOUR, KEY, ORDER, Stages, pg_connect, prefix_for, table_for
from bench.worker import start_clock


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


def with_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is not None:
        return url
    netloc = parts.netloc.replace("@", ":unused@", 1) if "@" in parts.netloc else parts.netloc
    return urlunsplit(parts._replace(netloc=netloc))


def contender_dlt(size: int) -> dict[str, Any]:
    # No telemetry (this machine reaches no such service), and no config folders in the project.
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
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
