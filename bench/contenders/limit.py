"""``limit``: the floor for "read + parse": list + read the objects, ISA-L gunzip, orjson-parse every record."""

from __future__ import annotations

import re
import time
from typing import Any

from bench.common import BUCKET, Stages, hour_objects, s3_client
from bench.worker import start_clock


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
