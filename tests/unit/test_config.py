"""Stream declarations: a valid file parses; every mistake is a ConfigError naming the stream and the field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from firehose_loader.config import (
    DEFAULT_STREAMS_FILE,
    ColumnType,
    ConfigError,
    Freshness,
    StreamError,
    load_config,
    load_streams,
    main,
    parse_column_type,
    parse_config,
    parse_stream,
    parse_streams,
    streams_file,
)
from tests.unit.stream_factory import STREAM_ENTRY, stream_entry

EXPECTED_TYPES = {
    "order_id": ColumnType("bigint"),
    "line_no": ColumnType("smallint"),
    "qty": ColumnType("integer"),
    "price": ColumnType("numeric", precision=12, scale=2),
    "weight": ColumnType("double precision"),
    "gift": ColumnType("boolean"),
    "sku": ColumnType("varchar", length=32),
    "note": ColumnType("text"),
    "ship_date": ColumnType("date"),
    "created_local": ColumnType("timestamp"),
    "updated_at": ColumnType("timestamptz"),
    "attrs": ColumnType("json"),
}


def config_with(entry: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"streams": [entry], **top}


def parse_error(document: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    return str(caught.value)


# --- a valid stream -------------------------------------------------------------------------------------------


def test_valid_stream_parses_every_type_and_composite_key() -> None:
    entry = stream_entry(
        settle_grace_minutes=20,
        tags=["sales", "hourly"],
        start_date="2026-02-01T05:00:00+00:00",
        catchup=True,
        owner="sales-data",
    )
    config = parse_config(config_with(entry, loader_schema="loader_meta", warehouse_conn_id="dwh"))

    assert config.settings.loader_schema == "loader_meta"
    assert config.settings.warehouse_conn_id == "dwh"
    assert config.settings.aws_conn_id == "firehose_s3"  # default kept
    (stream,) = config.streams
    assert config.stream("orders") is stream
    assert stream.name == "orders"
    assert stream.bucket == entry["bucket"]
    assert stream.prefix == entry["prefix"]
    schema, table = entry["table"].split(".")
    assert (stream.schema, stream.table) == (schema, table)
    assert stream.qualified_table == entry["table"]
    assert stream.key == tuple(entry["key"])
    assert stream.order_by == entry["order_by"]
    assert dict(stream.columns) == EXPECTED_TYPES
    assert stream.value_columns == tuple(entry["columns"])  # declaration order kept
    assert stream.settle_grace == timedelta(minutes=20)
    assert stream.tags == ("sales", "hourly")
    assert stream.start_date == datetime(2026, 2, 1, 5, tzinfo=UTC)
    assert stream.catchup is True
    assert stream.owner == "sales-data"
    assert stream.ingest_dag_id == "ingest_orders"


def test_column_types_render_back_to_their_declaration() -> None:
    stream = parse_config(config_with(stream_entry())).streams[0]
    for name, declared in STREAM_ENTRY["columns"].items():
        assert str(stream.columns[name]) == declared


def test_defaults_when_optional_fields_are_absent() -> None:
    entry = {key: STREAM_ENTRY[key] for key in ("name", "bucket", "table", "key", "order_by", "columns")}
    stream = parse_config(config_with(entry)).streams[0]
    assert stream.prefix == ""
    assert stream.settle_grace == timedelta(minutes=15)
    assert stream.start_date.tzinfo is not None
    assert stream.catchup is False
    assert stream.tags == ()


def test_freshness_is_hourly_unless_told_and_each_mode_has_its_interval() -> None:
    assert parse_stream(stream_entry(), 0).freshness == Freshness(mode="hourly")
    assert not parse_stream(stream_entry(), 0).freshness.microbatches
    poll = parse_stream(stream_entry(freshness={"mode": "poll"}), 0).freshness
    assert (poll.mode, poll.interval_minutes, poll.queue_url, poll.max_objects_per_run) == ("poll", 1, None, 500)
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/firehose-events"
    events = parse_stream(stream_entry(freshness={"mode": "events", "queue_url": queue, "max_objects_per_run": 50}), 0)
    assert events.freshness == Freshness("events", interval_minutes=10, queue_url=queue, max_objects_per_run=50)
    assert events.freshness.microbatches and events.microbatch_dag_id == "microbatch_orders"


def test_single_key_may_be_a_string() -> None:
    stream = parse_config(config_with(stream_entry(key="order_id"))).streams[0]
    assert stream.key == ("order_id",)


def test_start_date_is_converted_to_utc() -> None:
    stream = parse_config(config_with(stream_entry(start_date="2026-03-01T02:00:00+02:00"))).streams[0]
    assert stream.start_date == datetime(2026, 3, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int2", ColumnType("smallint")),
        ("INT", ColumnType("integer")),
        ("int8", ColumnType("bigint")),
        ("float8", ColumnType("double precision")),
        ("Double   Precision", ColumnType("double precision")),
        ("bool", ColumnType("boolean")),
        ("character varying(10)", ColumnType("varchar", length=10)),
        ("varchar( 65535 )", ColumnType("varchar", length=65535)),
        ("decimal(5)", ColumnType("numeric", precision=5, scale=0)),
        ("numeric(38, 38)", ColumnType("numeric", precision=38, scale=38)),
        ("timestamp with time zone", ColumnType("timestamptz")),
        ("timestamp without time zone", ColumnType("timestamp")),
        ("jsonb", ColumnType("json")),
        ("super", ColumnType("json")),
    ],
)
def test_type_aliases(text: str, expected: ColumnType) -> None:
    assert parse_column_type(text) == expected


@pytest.mark.parametrize(
    "text",
    ["money", "varchar", "varchar(0)", "varchar(65536)", "numeric(0,0)", "numeric(39,2)", "numeric(5,6)", "int; drop"],
)
def test_unknown_or_out_of_range_types(text: str) -> None:
    with pytest.raises(ValueError):
        parse_column_type(text)


# --- errors name the stream and the field ---------------------------------------------------------------------


def with_column(name: str, type_text: str = "text") -> dict[str, str]:
    return {**STREAM_ENTRY["columns"], name: type_text}


BAD_STREAMS = [
    pytest.param({"columns": with_column("x; DROP TABLE y")}, "columns", "x; DROP TABLE y", id="column-injection"),
    pytest.param({"columns": with_column('"quoted"')}, "columns", '"quoted"', id="column-quoted"),
    pytest.param({"columns": with_column("café")}, "columns", "café", id="column-unicode"),
    pytest.param({"columns": with_column("Upper")}, "columns", "Upper", id="column-uppercase"),
    pytest.param({"columns": with_column("a" * 64)}, "columns", "a" * 64, id="column-too-long"),
    pytest.param({"columns": with_column("abc\n")}, "columns", "abc", id="column-trailing-newline"),
    pytest.param({"columns": with_column("_firehose_object")}, "columns", "_firehose_object", id="column-reserved"),
    pytest.param({"columns": with_column("note2", "money")}, "columns.note2", "money", id="unknown-type"),
    pytest.param({"columns": with_column("note2", "varchar(0)")}, "columns.note2", "varchar", id="bad-varchar"),
    pytest.param({"columns": ["order_id"]}, "columns", "", id="columns-not-mapping"),
    pytest.param({"table": "sales.x; DROP TABLE y"}, "table", "x; DROP TABLE y", id="table-injection"),
    pytest.param({"table": '"sales".order_lines'}, "table", '"sales"', id="schema-quoted"),
    pytest.param({"table": "order_lines"}, "table", "order_lines", id="table-without-schema"),
    pytest.param({"table": "a.b.c"}, "table", "a.b.c", id="table-three-parts"),
    pytest.param({"key": ["order_id", "nope"]}, "key", "nope", id="key-not-a-column"),
    pytest.param({"key": ["order_id", "order_id"]}, "key", "order_id", id="key-repeated"),
    pytest.param({"key": ["order_id", "attrs"]}, "key", "attrs", id="key-json"),
    pytest.param({"key": 5}, "key", "5", id="key-not-a-list"),
    pytest.param({"order_by": "nope"}, "order_by", "nope", id="order-by-not-a-column"),
    pytest.param({"order_by": "gift"}, "order_by", "boolean", id="order-by-boolean"),
    pytest.param({"order_by": "attrs"}, "order_by", "json", id="order-by-json"),
    pytest.param({"order_by": ["updated_at"]}, "order_by", "updated_at", id="order-by-list"),
    pytest.param({"prefix": "orders/raw"}, "prefix", "orders/raw", id="prefix-no-trailing-slash"),
    pytest.param({"prefix": "/orders/"}, "prefix", "/orders/", id="prefix-leading-slash"),
    pytest.param({"prefix": "orders//raw/"}, "prefix", "orders//raw/", id="prefix-empty-folder"),
    pytest.param({"prefix": "ord ers/"}, "prefix", "ord ers/", id="prefix-space"),
    pytest.param({"staging_prefix": ""}, "staging_prefix", "", id="staging-prefix-empty"),
    pytest.param({"quarantine_prefix": "q"}, "quarantine_prefix", "q", id="quarantine-prefix-no-slash"),
    pytest.param({"error_prefix": "errors"}, "error_prefix", "errors", id="error-prefix-no-slash"),
    pytest.param({"bucket": "Firehose_Orders"}, "bucket", "Firehose_Orders", id="bucket-case-underscore"),
    pytest.param({"bucket": "ab"}, "bucket", "ab", id="bucket-too-short"),
    pytest.param({"bucket": "x" * 64}, "bucket", "x" * 64, id="bucket-too-long"),
    pytest.param({"bucket": "-orders"}, "bucket", "-orders", id="bucket-leading-dash"),
    pytest.param({"bucket": "my.orders"}, "bucket", "my.orders", id="bucket-dot"),
    pytest.param({"bucket": "orders\n"}, "bucket", "orders", id="bucket-trailing-newline"),
    pytest.param({"settle_grace_minutes": -1}, "settle_grace_minutes", "-1", id="grace-negative"),
    pytest.param({"settle_grace_minutes": 1441}, "settle_grace_minutes", "1441", id="grace-too-long"),
    pytest.param({"settle_grace_minutes": True}, "settle_grace_minutes", "True", id="grace-boolean"),
    pytest.param({"max_record_bytes": 10}, "max_record_bytes", "", id="max-record-bytes-small"),
    pytest.param({"split_above_bytes": 0}, "split_above_bytes", "0", id="split-above-zero"),
    pytest.param({"split_above_bytes": "1GB"}, "split_above_bytes", "1GB", id="split-above-text"),
    pytest.param({"split_above_bytes": True}, "split_above_bytes", "True", id="split-above-boolean"),
    pytest.param({"decode_processes": 0}, "decode_processes", "0", id="decode-processes-zero"),
    pytest.param({"decode_processes": 65}, "decode_processes", "65", id="decode-processes-too-many"),
    pytest.param({"decode_processes": "2"}, "decode_processes", "'2'", id="decode-processes-text"),
    pytest.param({"decode_processes": True}, "decode_processes", "True", id="decode-processes-boolean"),
    pytest.param({"tags": "sales"}, "tags", "", id="tags-not-list"),
    pytest.param({"start_date": "yesterday"}, "start_date", "yesterday", id="start-date-unparsable"),
    pytest.param({"start_date": "2026-01-01T00:30:00+00:00"}, "start_date", "00:30", id="start-date-not-hour"),
    pytest.param({"catchup": "yes"}, "catchup", "yes", id="catchup-string"),
    pytest.param({"freshness": "events"}, "freshness", "events", id="freshness-not-mapping"),
    pytest.param({"freshness": {"mode": "streaming"}}, "freshness", "streaming", id="freshness-unknown-mode"),
    pytest.param({"freshness": {"mode": "poll", "every": 1}}, "freshness", "every", id="freshness-unknown-key"),
    pytest.param({"freshness": {"mode": "events"}}, "freshness.queue_url", "None", id="events-without-queue"),
    pytest.param(
        {"freshness": {"mode": "events", "queue_url": "firehose-events"}},
        "freshness.queue_url",
        "firehose-events",
        id="events-queue-not-url",
    ),
    pytest.param(
        {"freshness": {"mode": "poll", "queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/q"}},
        "freshness.queue_url",
        "poll",
        id="queue-without-events",
    ),
    pytest.param(
        {"freshness": {"mode": "poll", "interval_minutes": 60}}, "freshness.interval_minutes", "60", id="interval-hour"
    ),
    pytest.param(
        {"freshness": {"mode": "poll", "interval_minutes": 0}}, "freshness.interval_minutes", "0", id="interval-zero"
    ),
    pytest.param(
        {"freshness": {"mode": "poll", "max_objects_per_run": 0}},
        "freshness.max_objects_per_run",
        "0",
        id="max-objects-zero",
    ),
    pytest.param(
        {
            "freshness": {
                "mode": "events",
                "queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
                "queue_poll_seconds": True,
            }
        },
        "freshness.queue_poll_seconds",
        "True",
        id="queue-poll-boolean",
    ),
]


@pytest.mark.parametrize(("overrides", "field", "value"), BAD_STREAMS)
def test_bad_stream_field_names_stream_and_field(overrides: dict[str, Any], field: str, value: str) -> None:
    message = parse_error(config_with(stream_entry(**overrides)))
    assert "'orders'" in message
    assert f"field '{field}" in message
    assert value in message


@pytest.mark.parametrize("field", ["bucket", "table", "key", "order_by", "columns"])
@pytest.mark.parametrize("absent", ["missing", None, ""])
def test_missing_required_field(field: str, absent: str | None) -> None:
    entry = stream_entry()
    if absent == "missing":
        del entry[field]
    else:
        entry[field] = absent
    message = parse_error(config_with(entry))
    assert "'orders'" in message
    assert f"'{field}'" in message


def test_missing_name_points_at_the_entry() -> None:
    entry = stream_entry()
    del entry["name"]
    message = parse_error({"streams": [stream_entry(name="first", table="a.b"), entry]})
    assert "streams[1]" in message
    assert "'name'" in message


@pytest.mark.parametrize("name", ["Orders", "1orders", "orders-eu", "o" * 41, "orders\n", "ördérs"])
def test_bad_stream_name(name: str) -> None:
    message = parse_error(config_with(stream_entry(name=name)))
    assert "streams[0].name" in message
    assert repr(name) in message


def test_unknown_stream_field_is_named() -> None:
    message = parse_error(config_with(stream_entry(colums={"a": "text"})))
    assert "'orders'" in message
    assert "colums" in message


def test_duplicate_stream_name() -> None:
    first = stream_entry()
    second = stream_entry(table="sales.other_lines")
    message = parse_error({"streams": [first, second]})
    assert "'orders'" in message
    assert "duplicate" in message
    assert "name" in message


def test_two_streams_feeding_one_table() -> None:
    message = parse_error({"streams": [stream_entry(), stream_entry(name="orders_eu")]})
    assert "'orders_eu'" in message
    assert "field 'table'" in message
    assert "'orders'" in message  # the stream that already feeds it


@pytest.mark.parametrize("schema", ["Loader", "loader-meta", "x; DROP TABLE y", 'l"m'])
def test_bad_loader_schema(schema: str) -> None:
    message = parse_error(config_with(stream_entry(), loader_schema=schema))
    assert "loader_schema" in message
    assert schema in message


@pytest.mark.parametrize("document", [None, [], {"stream": []}, {"streams": {"orders": {}}}])
def test_document_shape(document: Any) -> None:
    with pytest.raises(ConfigError):
        parse_config(document)


def test_unknown_top_level_field() -> None:
    message = parse_error({"streams": [], "aws_con_id": "x"})
    assert "aws_con_id" in message


def test_entry_not_a_mapping() -> None:
    message = parse_error({"streams": ["orders"]})
    assert "streams[0]" in message


# --- one bad stream stays alone ---------------------------------------------------------------------------------


def three_streams(**broken: Any) -> dict[str, Any]:
    """Two good streams around one broken by the overrides."""
    return {
        "streams": [
            stream_entry(name="first", table="sales.first"),
            stream_entry(**{"name": "broken", "table": "sales.broken", **broken}),
            stream_entry(name="last", table="sales.last"),
        ]
    }


def test_one_broken_stream_among_two_good_ones() -> None:
    config = parse_streams(three_streams(key=["order_id", "nope"]))
    assert [stream.name for stream in config.streams] == ["first", "last"]
    (error,) = config.errors
    assert (error.stream, error.index, error.field) == ("broken", 1, "key")
    assert "stream 'broken', field 'key'" in error.message
    assert "'nope'" in error.message
    assert config.error("broken") is error
    assert config.error("first") is None


@pytest.mark.parametrize(("overrides", "field", "value"), BAD_STREAMS)
def test_every_stream_error_is_kept_apart_naming_its_field(overrides: dict[str, Any], field: str, value: str) -> None:
    config = parse_streams(three_streams(**overrides))
    assert [stream.name for stream in config.streams] == ["first", "last"]
    (error,) = config.errors
    assert error.stream == "broken"
    assert error.field == field
    assert value in error.message


def test_the_strict_parse_still_raises_naming_the_broken_stream() -> None:
    message = parse_error(three_streams(order_by="nope"))
    assert "stream 'broken', field 'order_by'" in message
    assert "'first'" not in message


def test_the_strict_parse_lists_every_broken_stream() -> None:
    document = three_streams(order_by="nope")
    document["streams"].append(stream_entry(name="other", table="sales.other", bucket="Bad_Bucket"))
    message = parse_error(document)
    assert "2 streams are refused" in message
    assert "stream 'broken', field 'order_by'" in message
    assert "stream 'other', field 'bucket'" in message


@pytest.mark.parametrize(
    ("entry", "stream", "field"),
    [
        pytest.param({"bucket": "firehose-orders"}, "streams[1]", "name", id="no-name"),
        pytest.param({"name": "Orders"}, "streams[1]", "name", id="bad-name"),
        pytest.param("orders", "streams[1]", None, id="not-a-mapping"),
        pytest.param(stream_entry(name="broken", colums={}), "broken", "colums", id="unknown-field"),
        pytest.param(stream_entry(name="broken", table="sales.b", bucket=None), "broken", "bucket", id="missing"),
    ],
)
def test_an_entry_without_a_valid_name_is_named_by_its_index(entry: Any, stream: str, field: str | None) -> None:
    document = {"streams": [stream_entry(name="first", table="sales.first"), entry]}
    config = parse_streams(document)
    assert [item.name for item in config.streams] == ["first"]
    assert [(error.stream, error.index, error.field) for error in config.errors] == [(stream, 1, field)]


def test_the_later_duplicate_name_is_refused() -> None:
    config = parse_streams({"streams": [stream_entry(), stream_entry(table="sales.other_lines")]})
    assert [(stream.name, stream.qualified_table) for stream in config.streams] == [("orders", "sales.order_lines")]
    assert config.errors == (
        StreamError(
            stream="orders",
            index=1,
            field="name",
            message="stream 'orders' (streams[1]), field 'name': duplicate stream name, already declared by "
            "streams[0]; this later entry is refused",
        ),
    )


def test_a_name_taken_by_a_refused_entry_refuses_the_later_one_too() -> None:
    config = parse_streams({"streams": [stream_entry(key=["nope"]), stream_entry(table="sales.other_lines")]})
    assert config.streams == ()
    assert [(error.index, error.field) for error in config.errors] == [(0, "key"), (1, "name")]


def test_the_later_stream_feeding_a_table_is_refused() -> None:
    config = parse_streams({"streams": [stream_entry(), stream_entry(name="orders_eu")]})
    assert [stream.name for stream in config.streams] == ["orders"]
    (error,) = config.errors
    assert (error.stream, error.field) == ("orders_eu", "table")
    assert "already fed by stream 'orders'; this later stream is refused" in error.message


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(None, id="empty"),
        pytest.param({"stream": []}, id="no-streams"),
        pytest.param({"streams": {"orders": {}}}, id="streams-not-a-list"),
        pytest.param({"streams": [stream_entry()], "aws_con_id": "x"}, id="unknown-top-level"),
        pytest.param({"streams": [stream_entry()], "loader_schema": "Bad"}, id="bad-loader-schema"),
    ],
)
def test_errors_of_the_whole_file_still_raise(document: Any) -> None:
    with pytest.raises(ConfigError):
        parse_streams(document)


# --- files -------------------------------------------------------------------------------------------------------


def write_yaml(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def test_streams_config_env_var_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(
        tmp_path / "other.yml", {"loader_schema": "elsewhere", "streams": [stream_entry(name="from_env")]}
    )
    monkeypatch.setenv("STREAMS_CONFIG", str(path))
    assert streams_file() == path
    config = load_config()
    assert [stream.name for stream in config.streams] == ["from_env"]
    assert config.settings.loader_schema == "elsewhere"


@pytest.mark.parametrize("value", [None, ""])
def test_default_streams_file_without_env_var(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("STREAMS_CONFIG", raising=False)
    else:
        monkeypatch.setenv("STREAMS_CONFIG", value)
    assert streams_file() == DEFAULT_STREAMS_FILE


def test_explicit_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMS_CONFIG", str(tmp_path / "absent.yml"))
    path = write_yaml(tmp_path / "given.yml", {"streams": [stream_entry()]})
    assert load_config(path).streams[0].name == "orders"


def test_missing_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nowhere" / "streams.yml"
    monkeypatch.setenv("STREAMS_CONFIG", str(path))
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"streams: [\n  - name: orders\n", id="unclosed-flow"),
        pytest.param(b"streams:\n\t- name: orders\n", id="tab-indent"),
        pytest.param(b"", id="empty"),
        pytest.param(b"- just\n- a list\n", id="not-a-mapping"),
        pytest.param(b"streams: []\n# caf\xe9 in latin-1\n", id="not-utf8"),
    ],
)
def test_unreadable_file_is_config_error_naming_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "streams.yml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_error_in_file_names_stream_and_field(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "streams.yml", {"streams": [stream_entry(prefix="orders/raw")]})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "'orders'" in str(caught.value)
    assert "field 'prefix'" in str(caught.value)


def test_decode_processes_defaults_to_two_and_is_read_from_the_stream() -> None:
    assert parse_config(config_with(stream_entry())).streams[0].decode_processes == 2
    assert parse_config(config_with(stream_entry(decode_processes=1))).streams[0].decode_processes == 1


def test_split_above_bytes_defaults_to_one_gib_and_is_read_from_the_stream() -> None:
    assert parse_config(config_with(stream_entry())).streams[0].split_above_bytes == 1 << 30
    assert parse_config(config_with(stream_entry(split_above_bytes=5_000))).streams[0].split_above_bytes == 5_000


def test_every_stream_field_is_documented_in_the_field_table() -> None:
    """The field table in docs/streams.md names every field the parser accepts, and no other."""
    from firehose_loader.config import PROJECT_ROOT, STREAM_FIELDS

    rows = [line for line in (PROJECT_ROOT / "docs" / "streams.md").read_text().splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert documented >= STREAM_FIELDS
    assert documented & STREAM_FIELDS == STREAM_FIELDS


def test_the_documented_defaults_are_the_parsers_defaults() -> None:
    """Each one-field row of docs/streams.md's table shows the default the parser uses."""
    from firehose_loader.config import OPTIONAL_FIELDS, PROJECT_ROOT

    rows = [line.split("|") for line in (PROJECT_ROOT / "docs" / "streams.md").read_text().splitlines()]
    shown = {
        cells[1].strip().strip("`"): cells[2].strip().split("`")[1]
        for cells in rows
        if len(cells) > 3 and re.fullmatch(r" `[a-z_]+` ", cells[1]) and cells[2].strip().startswith("`")
    }
    written = {spec.name: spec.default for spec in OPTIONAL_FIELDS if not isinstance(spec.default, list | type(None))}

    def as_yaml(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else ('""' if value == "" else str(value))

    compared = {name: as_yaml(written[name]) for name in shown if name in written}
    assert len(compared) >= 8
    assert compared == {name: shown[name] for name in compared}


def test_load_streams_keeps_the_good_streams_and_load_config_refuses_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "streams.yml", three_streams(prefix="orders/raw"))
    config = load_streams(path)
    assert [stream.name for stream in config.streams] == ["first", "last"]
    assert [(error.stream, error.field) for error in config.errors] == [("broken", "prefix")]
    with pytest.raises(ConfigError, match="stream 'broken', field 'prefix'"):
        load_config(path)


# --- python -m firehose_loader.config --------------------------------------------------------------------------


def test_the_check_passes_the_bundled_streams_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DEFAULT_STREAMS_FILE)]) == 0
    out = capsys.readouterr().out
    assert "0 refused" in out
    assert "ok       events" in out


def test_the_check_names_the_refused_stream_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_yaml(tmp_path / "streams.yml", three_streams(order_by="nope"))
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "2 stream(s) valid, 1 refused" in out
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [["ok", "first"], ["REFUSED", "broken"], ["ok", "last"]]
    assert "field order_by: stream 'broken', field 'order_by'" in lines[2]


def test_the_check_refuses_a_broken_file_as_a_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "streams.yml"
    path.write_text("streams: [\n", encoding="utf-8")
    assert main([str(path)]) == 2
    assert "the whole file is refused" in capsys.readouterr().err


def test_the_check_runs_as_a_module(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write_yaml(tmp_path / "streams.yml", three_streams(bucket="Bad_Bucket"))
    result = subprocess.run(
        [sys.executable, "-m", "firehose_loader.config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert "REFUSED  broken  field bucket: stream 'broken', field 'bucket'" in result.stdout
