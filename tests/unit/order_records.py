"""The orders stream of the records/ tests and its sample objects (this module holds no tests).

DEDUPE_OBJECTS are three objects whose duplicates exercise every tie of the winner rule.
"""

from __future__ import annotations

import json
from typing import Any

from firehose_loader.config import Stream, parse_config
from firehose_loader.records.validate import SourceObject

ENTRY = {
    "name": "orders",
    "bucket": "firehose-orders",
    "prefix": "orders/",
    "table": "sales.orders",
    "key": ["order_id", "region"],
    "order_by": "seq",
    "columns": {
        "order_id": "bigint",
        "region": "varchar(8)",
        "seq": "integer",
        "amount": "numeric(10,2)",
        "note": "text",
        "attrs": "json",
    },
}
STREAM: Stream = parse_config({"streams": [ENTRY]}).streams[0]
KEY = ("order_id", "region")


def rec(order_id: Any, region: Any, seq: Any, **extra: Any) -> dict[str, Any]:
    record = {"order_id": order_id, "region": region, "seq": seq}
    record.update(extra)
    return record


def ndjson(records: list[Any]) -> tuple[bytes, list[int]]:
    """Records (dicts, or raw bytes for damaged lines) one per line; returns the data and each line's offset."""
    data = b""
    offsets = []
    for record in records:
        offsets.append(len(data))
        data += (record if isinstance(record, bytes) else json.dumps(record).encode()) + b"\n"
    return data, offsets


def source(key: str, records: list[Any]) -> SourceObject:
    body, _ = ndjson(records)
    return SourceObject(key=key, etag=f"etag-{key}", size=len(body), body=body)


def rows_of(batch_rows) -> list[dict[str, Any]]:
    return batch_rows.to_pylist()


DEDUPE_OBJECTS = [
    source(
        "orders/2026/01/01/00/obj-a",
        [
            rec(1, "eu", 5, note="a1-newest"),  # greatest seq wins even in the first object at offset 0
            rec(2, "eu", 1, note="a2"),
            rec(3, "eu", 7, note="a3-first"),
            rec(3, "eu", 7, note="a3-later-offset"),  # equal seq: later offset in the same object wins ...
            rec(5, "eu", 1, note="a5-only"),
        ],
    ),
    source(
        "orders/2026/01/01/00/obj-b",
        [
            rec(1, "eu", 4, note="b1-older"),
            rec(2, "eu", 1, note="b2-tie-greater-object"),  # equal seq: greater object key wins
            rec(1, "us", 1, note="b1us-other-region"),  # composite key: a different key
            rec(3, "eu", 6, note="b3-older"),
        ],
    ),
    source(
        "orders/2026/01/01/00/obj-c",
        [
            rec(3, "eu", 7, note="c3-tie-greatest-object"),  # ... unless a greater object has the same seq
            rec(4, "eu", 10, note="c4"),
            rec(4, "eu", 9, note="c4-older-later-offset"),
            rec(2, "eu", 0, note="c2-oldest"),
        ],
    ),
]
