"""Shared by the Redshift stand-in tests (not a test module): the dialect, the settings and the streams they render."""

from __future__ import annotations

from firehose_loader.config import Settings, Stream
from firehose_loader.warehouse.redshift import Redshift
from tests.unit.stream_factory import make_stream

COPY_ROLE = "arn:aws:iam::123456789012:role/firehose-loader-copy"
DIALECT = Redshift(iam_role=COPY_ROLE)
SETTINGS = Settings(loader_schema="firehose_loader")

# A composite key and every column type (tests/unit/stream_factory.py) with a real-time writer
# beside the loader, and one whose every name is an SQL keyword, with a long varchar and a json column.
STREAMS: dict[str, Stream] = {
    "rich": make_stream(realtime_writer=True),
    "keywords": make_stream(
        table="select.from",
        key=["user", "order"],
        order_by="group",
        columns={
            "user": "bigint",
            "order": "integer",
            "group": "timestamptz",
            "table": "text",
            "limit": "varchar(20000)",
            "super": "json",
        },
    ),
}
