"""Stream declarations: parsed from YAML, validated before anything runs.

Every identifier that reaches SQL passes :func:`check_identifier` here, so a bad
name fails DAG parsing with a message naming the stream and the field instead of
reaching the warehouse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STREAMS_FILE = PROJECT_ROOT / "include" / "streams.yml"

# Lowercase, unquoted-safe, and short enough for PostgreSQL (63) and Redshift (127).
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# S3 bucket naming rules (the subset without dots, which break virtual-host TLS).
BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
PREFIX = re.compile(r"^([A-Za-z0-9!_.*'()-]+/)*$")
# 1 GiB of gzip objects is ~4 M records of 0.7 KB: about what one extract task holds in 1.5 GB (bench/results.md).
DEFAULT_SPLIT_ABOVE_BYTES = 1 << 30
# Processes that decode one extract task's objects: on two cores they take about a third off the
# decoding of the bench's 1 M-record hour (bench/NOTES.md).
DEFAULT_DECODE_PROCESSES = 2
MAX_DECODE_PROCESSES = 64


class ConfigError(ValueError):
    """The streams file is wrong; the message names the stream and the field."""


@dataclass(frozen=True)
class ColumnType:
    """A warehouse column type, parsed from the streams file (e.g. ``numeric(12,2)``)."""

    name: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.name == "varchar":
            return f"varchar({self.length})"
        if self.name == "numeric":
            return f"numeric({self.precision},{self.scale})"
        return self.name


SIMPLE_TYPES = {
    "smallint": "smallint",
    "int2": "smallint",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "bigint",
    "int8": "bigint",
    "double precision": "double precision",
    "float8": "double precision",
    "boolean": "boolean",
    "bool": "boolean",
    "text": "text",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz",
    "timestamp with time zone": "timestamptz",
    "json": "json",
    "jsonb": "json",
    "super": "json",
}
VARCHAR = re.compile(r"^(?:varchar|character varying)\s*\(\s*(\d+)\s*\)$")
NUMERIC = re.compile(r"^(?:numeric|decimal)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
MAX_VARCHAR = 65535


def parse_column_type(text: str) -> ColumnType:
    """Parse a type name; raise ``ValueError`` naming what is accepted."""
    normalized = " ".join(str(text).strip().lower().split())
    if normalized in SIMPLE_TYPES:
        return ColumnType(SIMPLE_TYPES[normalized])
    if match := VARCHAR.fullmatch(normalized):
        length = int(match.group(1))
        if not 1 <= length <= MAX_VARCHAR:
            raise ValueError(f"varchar length must be 1..{MAX_VARCHAR}, got {length}")
        return ColumnType("varchar", length=length)
    if match := NUMERIC.fullmatch(normalized):
        precision = int(match.group(1))
        scale = int(match.group(2) or 0)
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise ValueError(f"numeric needs 1 <= precision <= 38 and 0 <= scale <= precision, got {text!r}")
        return ColumnType("numeric", precision=precision, scale=scale)
    accepted = "smallint, integer, bigint, numeric(p,s), double precision, boolean, varchar(n), text, date, timestamp, timestamptz, json"
    raise ValueError(f"unknown column type {text!r} (accepted: {accepted})")


def check_identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ConfigError(
            f"{where}: {value!r} is not an accepted identifier "
            "(lowercase letters, digits and _, starting with a letter or _, at most 63 characters)"
        )
    return value


DOTTED_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class NotifierSpec:
    """An Airflow notifier class (dotted path) and its keyword arguments, imported only to alert."""

    class_path: str = "firehose_loader.airflow.notify.LogNotifier"
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stream:
    """One Firehose delivery stream and the warehouse table it feeds."""

    name: str
    bucket: str
    prefix: str
    schema: str
    table: str
    key: tuple[str, ...]
    order_by: str
    columns: Mapping[str, ColumnType]
    settle_grace: timedelta = timedelta(minutes=15)
    staging_prefix: str = "firehose-loader/staging/"
    quarantine_prefix: str = "firehose-loader/quarantine/"
    error_prefix: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    owner: str = "data-engineering"
    max_record_bytes: int = 1_048_576
    # An hour whose objects total more than this (bytes as stored in S3) is extracted by several
    # tasks, each reading at most this much; see ingest.extract_or_split.
    split_above_bytes: int = DEFAULT_SPLIT_ABOVE_BYTES
    # Worker processes that decode and validate an extract task's objects side by side (1: in
    # the task's own process); never more than the CPUs the task may use. See batch.decoded_objects.
    decode_processes: int = DEFAULT_DECODE_PROCESSES
    start_date: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    catchup: bool = False
    audit_alert_threshold: int = 0
    audit_notifier: NotifierSpec = field(default_factory=lambda: NotifierSpec())

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def ingest_dag_id(self) -> str:
        return f"ingest_{self.name}"

    @property
    def audit_dag_id(self) -> str:
        return f"audit_{self.name}"

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(self.columns)


@dataclass(frozen=True)
class Settings:
    """Project-wide settings from the top of the streams file."""

    aws_conn_id: str = "firehose_s3"
    warehouse_conn_id: str = "warehouse"
    loader_schema: str = "firehose_loader"


@dataclass(frozen=True)
class StreamsConfig:
    settings: Settings
    streams: tuple[Stream, ...]

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)


STREAM_FIELDS = {
    "name", "bucket", "prefix", "table", "key", "order_by", "columns", "settle_grace_minutes",
    "staging_prefix", "quarantine_prefix", "error_prefix", "tags", "owner", "max_record_bytes",
    "split_above_bytes", "decode_processes", "start_date", "catchup", "audit_alert_threshold", "audit_notifier",
}  # fmt: skip
SETTINGS_FIELDS = {"aws_conn_id", "warehouse_conn_id", "loader_schema"}


def _require(entry: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in entry or entry[name] in (None, "", [], {}):
        raise ConfigError(f"{where}: missing required field {name!r}")
    return entry[name]


def _check_prefix(value: Any, where: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    if value and not value.endswith("/"):
        # A bare prefix would match sibling folders (events/2026/01/01/1 is also a prefix of hours 10-19).
        raise ConfigError(f"{where}: {value!r} must end with '/'")
    if (not value and not allow_empty) or not PREFIX.fullmatch(value) or "//" in value or value.startswith("/"):
        raise ConfigError(
            f"{where}: {value!r} is not an accepted S3 prefix (folders of [A-Za-z0-9!_.*'()-] ending in '/')"
        )
    return value


def parse_stream(entry: Any, index: int) -> Stream:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"streams[{index}]: must be a mapping, got {type(entry).__name__}")
    raw_name = _require(entry, "name", f"streams[{index}]")
    if not isinstance(raw_name, str) or not STREAM_NAME.fullmatch(raw_name):
        raise ConfigError(
            f"streams[{index}].name: {raw_name!r} is not an accepted stream name "
            "(lowercase letters, digits and _, starting with a letter, at most 40 characters)"
        )
    where = f"stream {raw_name!r}"
    unknown = set(entry) - STREAM_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)} (accepted: {sorted(STREAM_FIELDS)})")

    bucket = _require(entry, "bucket", where)
    if not isinstance(bucket, str) or not BUCKET.fullmatch(bucket):
        raise ConfigError(f"{where}, field 'bucket': {bucket!r} is not a valid S3 bucket name")
    prefix = _check_prefix(entry.get("prefix", ""), f"{where}, field 'prefix'", allow_empty=True)

    table_text = _require(entry, "table", where)
    parts = str(table_text).split(".") if isinstance(table_text, str) else [table_text]
    if len(parts) != 2:
        raise ConfigError(f"{where}, field 'table': {table_text!r} must be schema.table")
    schema = check_identifier(parts[0], f"{where}, field 'table' (schema)")
    table = check_identifier(parts[1], f"{where}, field 'table'")

    raw_columns = _require(entry, "columns", where)
    if not isinstance(raw_columns, Mapping):
        raise ConfigError(f"{where}, field 'columns': must map column names to types")
    columns: dict[str, ColumnType] = {}
    for column, type_text in raw_columns.items():
        check_identifier(column, f"{where}, field 'columns'")
        if column.startswith("_firehose_"):
            raise ConfigError(f"{where}, field 'columns': {column!r} is reserved for the loader")
        try:
            columns[column] = parse_column_type(type_text)
        except ValueError as exc:
            raise ConfigError(f"{where}, field 'columns.{column}': {exc}") from None

    raw_key = _require(entry, "key", where)
    if not isinstance(raw_key, str | list) or not all(isinstance(column, str) for column in raw_key):
        raise ConfigError(f"{where}, field 'key': must be a column name or a list of column names, got {raw_key!r}")
    key = (raw_key,) if isinstance(raw_key, str) else tuple(raw_key)
    if not key or len(set(key)) != len(key):
        raise ConfigError(f"{where}, field 'key': must list distinct columns, got {raw_key!r}")
    for column in key:
        if column not in columns:
            raise ConfigError(f"{where}, field 'key': {column!r} is not among the columns {sorted(columns)}")
        if columns[column].name == "json":
            raise ConfigError(f"{where}, field 'key': json column {column!r} cannot be part of the key")

    order_by = _require(entry, "order_by", where)
    if not isinstance(order_by, str):
        raise ConfigError(f"{where}, field 'order_by': must be one column name, got {order_by!r}")
    if order_by not in columns:
        raise ConfigError(f"{where}, field 'order_by': {order_by!r} is not among the columns {sorted(columns)}")
    if columns[order_by].name in ("json", "boolean"):
        raise ConfigError(f"{where}, field 'order_by': a {columns[order_by]} column cannot order versions")

    grace = entry.get("settle_grace_minutes", 15)
    if not isinstance(grace, int) or isinstance(grace, bool) or not 0 <= grace <= 24 * 60:
        raise ConfigError(f"{where}, field 'settle_grace_minutes': must be an integer 0..1440, got {grace!r}")
    max_record_bytes = entry.get("max_record_bytes", 1_048_576)
    if not isinstance(max_record_bytes, int) or max_record_bytes < 1024:
        raise ConfigError(f"{where}, field 'max_record_bytes': must be an integer >= 1024")
    split_above_bytes = entry.get("split_above_bytes", DEFAULT_SPLIT_ABOVE_BYTES)
    if not isinstance(split_above_bytes, int) or isinstance(split_above_bytes, bool) or split_above_bytes < 1:
        raise ConfigError(f"{where}, field 'split_above_bytes': must be a positive integer, got {split_above_bytes!r}")
    decode_processes = entry.get("decode_processes", DEFAULT_DECODE_PROCESSES)
    if (
        not isinstance(decode_processes, int)
        or isinstance(decode_processes, bool)
        or not 1 <= decode_processes <= MAX_DECODE_PROCESSES
    ):
        raise ConfigError(
            f"{where}, field 'decode_processes': must be an integer 1..{MAX_DECODE_PROCESSES}, got {decode_processes!r}"
        )
    owner = entry.get("owner", "data-engineering")
    if not isinstance(owner, str) or not owner.strip():
        raise ConfigError(f"{where}, field 'owner': must be a non-empty string, got {owner!r}")
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ConfigError(f"{where}, field 'tags': must be a list of strings")

    start_text = entry.get("start_date", "2026-01-01T00:00:00+00:00")
    try:
        start_date = datetime.fromisoformat(str(start_text))
    except ValueError:
        raise ConfigError(f"{where}, field 'start_date': {start_text!r} is not an ISO 8601 date or time") from None
    start_date = start_date.replace(tzinfo=start_date.tzinfo or UTC).astimezone(UTC)
    if start_date.minute or start_date.second or start_date.microsecond:
        raise ConfigError(f"{where}, field 'start_date': {start_text!r} must be on a whole hour")
    catchup = entry.get("catchup", False)
    if not isinstance(catchup, bool):
        raise ConfigError(f"{where}, field 'catchup': must be true or false, got {catchup!r}")

    threshold = entry.get("audit_alert_threshold", 0)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
        raise ConfigError(f"{where}, field 'audit_alert_threshold': must be an integer >= 0, got {threshold!r}")
    notifier = parse_notifier(entry.get("audit_notifier"), f"{where}, field 'audit_notifier'")

    return Stream(
        name=raw_name,
        bucket=bucket,
        prefix=prefix,
        schema=schema,
        table=table,
        key=key,
        order_by=order_by,
        columns=columns,
        settle_grace=timedelta(minutes=grace),
        staging_prefix=_check_prefix(
            entry.get("staging_prefix", "firehose-loader/staging/"),
            f"{where}, field 'staging_prefix'",
            allow_empty=False,
        ),
        quarantine_prefix=_check_prefix(
            entry.get("quarantine_prefix", "firehose-loader/quarantine/"),
            f"{where}, field 'quarantine_prefix'",
            allow_empty=False,
        ),
        error_prefix=_check_prefix(entry.get("error_prefix", ""), f"{where}, field 'error_prefix'", allow_empty=True),
        tags=tuple(tags),
        owner=owner,
        max_record_bytes=max_record_bytes,
        split_above_bytes=split_above_bytes,
        decode_processes=decode_processes,
        start_date=start_date,
        catchup=catchup,
        audit_alert_threshold=threshold,
        audit_notifier=notifier,
    )


def parse_notifier(value: Any, where: str) -> NotifierSpec:
    if value is None:
        return NotifierSpec()
    if not isinstance(value, Mapping) or set(value) - {"class", "kwargs"} or "class" not in value:
        raise ConfigError(f"{where}: must be a mapping with 'class' (a dotted path) and optional 'kwargs'")
    class_path = value["class"]
    if not isinstance(class_path, str) or not DOTTED_PATH.fullmatch(class_path):
        raise ConfigError(
            f"{where}: 'class' must be a dotted path such as airflow.providers.smtp.notifications.smtp.SmtpNotifier, got {class_path!r}"
        )
    kwargs = value.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"{where}: 'kwargs' must be a mapping")
    return NotifierSpec(class_path=class_path, kwargs=dict(kwargs))


def parse_config(document: Any, source: str = "<streams>") -> StreamsConfig:
    if not isinstance(document, Mapping) or "streams" not in document:
        raise ConfigError(f"{source}: expected a mapping with a 'streams' list")
    unknown = set(document) - {"streams", *SETTINGS_FIELDS}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level field(s) {sorted(unknown)}")
    settings = Settings(
        aws_conn_id=str(document.get("aws_conn_id", Settings.aws_conn_id)),
        warehouse_conn_id=str(document.get("warehouse_conn_id", Settings.warehouse_conn_id)),
        loader_schema=check_identifier(
            document.get("loader_schema", Settings.loader_schema), f"{source}: loader_schema"
        ),
    )
    entries = document["streams"]
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: 'streams' must be a list")
    streams = tuple(parse_stream(entry, index) for index, entry in enumerate(entries))
    names: set[str] = set()
    for stream in streams:
        if stream.name in names:
            raise ConfigError(f"stream {stream.name!r}: duplicate stream name")
        names.add(stream.name)
    tables: dict[str, str] = {}
    for stream in streams:
        if stream.qualified_table in tables:
            raise ConfigError(
                f"stream {stream.name!r}, field 'table': {stream.qualified_table} is already fed by stream "
                f"{tables[stream.qualified_table]!r}"
            )
        tables[stream.qualified_table] = stream.name
    return StreamsConfig(settings=settings, streams=streams)


def streams_file() -> Path:
    return Path(os.environ.get("STREAMS_CONFIG") or DEFAULT_STREAMS_FILE)


def load_config(path: Path | None = None) -> StreamsConfig:
    """Read and validate the streams file (``$STREAMS_CONFIG`` or ``include/streams.yml``)."""
    path = path or streams_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read streams file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"streams file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(document, str(path))
