"""Validation knows the warehouse: a value the dialect cannot store quarantines its record, the rest stages.

Redshift cannot run here: its limits (json through varchar(65535), varchar lengths in bytes,
trailing blanks ignored when comparing) are the dialect's ``limits``, applied here exactly as the
extract task applies them; PostgreSQL's are the default.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from firehose_loader.config import parse_column_type
from firehose_loader.records.coercion import POSTGRES_LIMITS, InexactNumberError, coerce_column, coercer
from firehose_loader.records.stage import stage_hour
from firehose_loader.records.validate import SourceObject
from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.redshift import REDSHIFT_LIMITS, Redshift
from tests.unit.stream_factory import make_stream

STREAM = make_stream(
    key=["id"],
    order_by="seq",
    columns={"id": "varchar(64)", "seq": "integer", "body": "json", "essay": "varchar(30000)", "note": "text"},
)
BIG_JSON = {"blob": "x" * 70_000}  # 70 KB of JSON text: over Redshift's 65535, far under PostgreSQL's 16 MB
LONG_ESSAY = "😀" * 20_000  # 20000 characters (fits varchar(30000)) but 80000 bytes (over 65535)


def source(records: list[dict[str, Any]], key: str = "events/2026/03/01/10/obj-a") -> SourceObject:
    body = b"\n".join(orjson.dumps(record) for record in records) + b"\n"
    return SourceObject(key, '"e"', len(body), body)


def staged(records: list[dict[str, Any]], tmp_path: Any, limits=POSTGRES_LIMITS) -> tuple[list[dict], list]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    batch = stage_hour(STREAM, [source(records)], tmp_path, limits=limits)
    rows = [] if batch.path is None else pq.read_table(batch.path).to_pylist()
    return rows, batch.quarantined


HOUR = [
    {"id": "ok-1", "seq": 1, "body": {"a": 1}, "essay": "short", "note": "n"},
    {"id": "big-json", "seq": 1, "body": BIG_JSON},
    {"id": "long-essay", "seq": 1, "essay": LONG_ESSAY},
    {"id": "ok-2", "seq": 1, "essay": "é" * 16_000},  # 32000 bytes: fits both
]


def test_the_dialects_carry_their_limits() -> None:
    assert Postgres().limits == POSTGRES_LIMITS
    assert Redshift(iam_role="default").limits == REDSHIFT_LIMITS
    assert (REDSHIFT_LIMITS.json_max_bytes, REDSHIFT_LIMITS.varchar_max_bytes) == (65535, 65535)


def test_on_redshift_a_70_kb_json_and_an_over_long_multibyte_varchar_are_quarantined_and_the_rest_stages(
    tmp_path: Any,
) -> None:
    rows, quarantined = staged(HOUR, tmp_path, REDSHIFT_LIMITS)
    assert sorted(row["id"] for row in rows) == ["ok-1", "ok-2"]
    reasons = {orjson.loads(record.raw)["id"]: record.reason for record in quarantined}
    assert set(reasons) == {"big-json", "long-essay"}
    assert reasons["big-json"].startswith("column body: JSON value of 70011 bytes exceeds the 65535 bytes")
    assert reasons["long-essay"] == (
        "column essay: string of 80000 bytes exceeds the 65535 bytes a Redshift varchar holds"
    )
    # The quarantined record is kept whole, at its byte offset in the object.
    body = source(HOUR).body
    for record in quarantined:
        assert body[record.offset :].startswith(record.raw)


def test_on_postgresql_the_same_values_load(tmp_path: Any) -> None:
    rows, quarantined = staged(HOUR, tmp_path)
    assert quarantined == []
    assert {row["id"]: row["essay"] for row in rows}["long-essay"] == LONG_ESSAY


@pytest.mark.parametrize("key", ["a1 ", "a1  "])
def test_on_redshift_a_key_with_trailing_blanks_is_quarantined_and_on_postgresql_it_is_its_own_key(
    tmp_path: Any, key: str
) -> None:
    records = [{"id": "a1", "seq": 1}, {"id": key, "seq": 2}]
    rows, quarantined = staged(records, tmp_path / "redshift", REDSHIFT_LIMITS)
    assert [row["id"] for row in rows] == ["a1"]
    (record,) = quarantined
    assert record.reason == (
        f"column id: {key!r} ends in a blank, which Redshift ignores when it compares text ('a1' = 'a1 '); "
        "send it without trailing blanks"
    )
    rows, quarantined = staged(records, tmp_path / "postgres")
    assert sorted(row["id"] for row in rows) == ["a1", key] and quarantined == []


def test_numbers_a_double_cannot_hold_go_into_numeric_exactly(tmp_path: Any) -> None:
    stream = make_stream(
        key=["id"], order_by="seq", columns={"id": "numeric(38,0)", "seq": "integer", "share": "numeric(38,20)"}
    )
    body = (
        b'{"id": 123456789012345678901234567890, "seq": 1, "share": 0.12345678901234567890123}\n'
        b'{"id": 123456789012345678901234567891, "seq": 1, "share": 0.5}\n'
    )
    batch = stage_hour(stream, [SourceObject("events/obj", '"e"', len(body), body)], tmp_path)
    rows = pq.read_table(batch.path).to_pylist()
    assert batch.quarantined == []
    assert sorted((row["id"], row["share"]) for row in rows) == [
        (Decimal("123456789012345678901234567890"), Decimal("0.12345678901234567890")),
        (Decimal("123456789012345678901234567891"), Decimal("0.50000000000000000000")),
    ]


def test_an_integer_beyond_bigint_is_quarantined_with_the_reason_never_rounded(tmp_path: Any) -> None:
    stream = make_stream(key=["id"], order_by="seq", columns={"id": "bigint", "seq": "integer"})
    body = b'{"id": 123456789012345678901234567890, "seq": 1}\n{"id": 9007199254740993, "seq": 1}\n'
    batch = stage_hour(stream, [SourceObject("events/obj", '"e"', len(body), body)], tmp_path)
    assert [row["id"] for row in pq.read_table(batch.path).to_pylist()] == [9007199254740993]
    (record,) = batch.quarantined
    assert record.reason == "column id: 123456789012345678901234567890 is out of range for bigint"


def test_without_the_record_text_an_inexact_number_is_quarantined_as_send_it_as_a_string() -> None:
    with pytest.raises(InexactNumberError, match="send it as a string"):
        coercer(parse_column_type("numeric(38,0)"))(1.2345678901234568e29)
    array, errors = coerce_column(parse_column_type("bigint"), [1, 2.0**70])
    assert array.to_pylist() == [1, None]
    assert errors == {
        1: "1.1805916207174113e+21 came through a double, which cannot hold that integer exactly (send it as a string)"
    }


def test_a_text_order_by_is_compared_by_code_point_in_the_postgresql_merge_and_erasure() -> None:
    """pandas and Redshift order text by code point; PostgreSQL by the database collation unless told."""
    from firehose_loader.config import Settings
    from firehose_loader.load import template_context
    from firehose_loader.warehouse.render import render

    text_ordered = make_stream(key=["id"], order_by="version", columns={"id": "bigint", "version": "varchar(16)"})
    for dialect, collation in ((Postgres(), ' COLLATE "C"'), (Redshift(iam_role="default"), "")):
        context = {**template_context(text_ordered, Settings(), dialect), "lock_statement": "LOCK x"}
        merge = render("merge.sql", **context)
        assert f's."version"{collation} > c."version"' in merge
        assert f'ORDER BY t."version"{collation} DESC' in merge
        assert f'MAX("version"{collation})' in render("erase/erase_key.sql", **context)
    number_ordered = {**template_context(STREAM, Settings(), Postgres()), "lock_statement": "LOCK x"}
    assert "COLLATE" not in render("merge.sql", **number_ordered)
