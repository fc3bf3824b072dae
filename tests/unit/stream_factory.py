"""Shared by the unit tests: a valid stream declaration to start from (not a test module)."""

from __future__ import annotations

import copy
from typing import Any

from firehose_loader.config import Stream, parse_config

# One stream using every accepted column type, with a composite key.
STREAM_ENTRY: dict[str, Any] = {
    "name": "orders",
    "bucket": "firehose-orders",
    "prefix": "orders/raw/",
    "table": "sales.order_lines",
    "key": ["order_id", "line_no"],
    "order_by": "updated_at",
    "columns": {
        "order_id": "bigint",
        "line_no": "smallint",
        "qty": "integer",
        "price": "numeric(12,2)",
        "weight": "double precision",
        "gift": "boolean",
        "sku": "varchar(32)",
        "note": "text",
        "ship_date": "date",
        "created_local": "timestamp",
        "updated_at": "timestamptz",
        "attrs": "json",
    },
}


def stream_entry(**overrides: Any) -> dict[str, Any]:
    entry = copy.deepcopy(STREAM_ENTRY)
    entry.update(overrides)
    return entry


def make_stream(**overrides: Any) -> Stream:
    return parse_config({"streams": [stream_entry(**overrides)]}).streams[0]
