"""Stream declarations: parsed from YAML, validated before anything runs.

Every identifier that reaches SQL passes :func:`check_identifier` here, so a bad
name fails DAG parsing with a message naming the stream and the field instead of
reaching the warehouse.

Streams are parsed one by one: :func:`load_streams` returns the valid streams and a
:class:`StreamError` for each refused entry, so one bad stream does not take the others
down; :func:`load_config` is the strict form that raises on any error. Errors of the file
as a whole (unreadable, not YAML, no ``streams`` list, an unknown top-level field, a bad
``loader_schema``) raise from both: there is no stream to keep.

``python -m firehose_loader.config [FILE]`` checks a streams file and exits non-zero if
any stream is refused (see docs/streams.md).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from firehose_loader.prefixes import PrefixError, parse_prefix

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STREAMS_FILE = PROJECT_ROOT / "include" / "streams.yml"

# Lowercase, unquoted-safe, and short enough for PostgreSQL (63) and Redshift (127).
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# S3 bucket naming rules (the subset without dots, which break virtual-host TLS).
BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
PREFIX = re.compile(r"^([A-Za-z0-9!_.*'()-]+/)*$")
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


FRESHNESS_MODES = ("hourly", "poll", "events")
# An SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>, or a local endpoint's).
QUEUE_URL = re.compile(r"^https?://[A-Za-z0-9.:-]+/[0-9]{1,12}/[A-Za-z0-9_-]{1,80}(\.fifo)?$")


@dataclass(frozen=True)
class Freshness:
    """How soon the stream's objects are merged: after the hour (hourly), or object by object within minutes.

    ``poll`` lists the open hour folders every ``interval_minutes``; ``events`` runs when an S3
    event reaches ``queue_url`` (an SQS queue), and also every ``interval_minutes`` (the timed
    sweep that finds what a lost event did not announce). Either way a micro-batch takes at most
    ``max_objects_per_run`` objects. The hourly ingest then settles each hour.
    """

    mode: str = "hourly"
    interval_minutes: int = 1
    queue_url: str | None = None
    max_objects_per_run: int = 500
    # How long the event trigger waits between empty polls of the queue (SqsSensorTrigger's waiter_delay).
    queue_poll_seconds: int = 5

    @property
    def microbatches(self) -> bool:
        return self.mode != "hourly"


# Per mode, the interval a micro-batch DAG runs at unless told: poll lists every minute; with
# events, the timed sweep only catches what a lost or stranded event did not announce.
DEFAULT_INTERVAL_MINUTES = {"hourly": 1, "poll": 1, "events": 10}
FRESHNESS_FIELDS = ("mode", "interval_minutes", "queue_url", "max_objects_per_run", "queue_poll_seconds")


def _subfield(where: str, key: str) -> str:
    """``stream 'x', field 'freshness'`` → ``stream 'x', field 'freshness.<key>'``."""
    return f"{where[:-1]}.{key}'" if where.endswith("'") else f"{where}.{key}"


def _freshness(value: Any, where: str) -> Freshness:
    if value is None:
        return Freshness()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping with 'mode' ({', '.join(FRESHNESS_MODES)}), got {value!r}")
    unknown = set(value) - set(FRESHNESS_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (accepted: {list(FRESHNESS_FIELDS)})")
    mode = value.get("mode", "hourly")
    if mode not in FRESHNESS_MODES:
        raise ConfigError(f"{where}: mode must be one of {', '.join(FRESHNESS_MODES)}, got {mode!r}")
    interval = _integer(1, 59)(
        value.get("interval_minutes", DEFAULT_INTERVAL_MINUTES[mode]), _subfield(where, "interval_minutes")
    )
    queue_url = value.get("queue_url")
    if mode == "events":
        if not isinstance(queue_url, str) or not QUEUE_URL.fullmatch(queue_url):
            raise ConfigError(
                f"{_subfield(where, 'queue_url')}: mode events needs the SQS queue that receives the bucket's "
                f"s3:ObjectCreated:* notifications, as https://sqs.<region>.amazonaws.com/<account>/<name>, got {queue_url!r}"
            )
    elif queue_url is not None:
        raise ConfigError(f"{_subfield(where, 'queue_url')}: only mode events reads a queue (mode is {mode!r})")
    return Freshness(
        mode=mode,
        interval_minutes=interval,
        queue_url=queue_url,
        max_objects_per_run=_integer(1, 100_000)(
            value.get("max_objects_per_run", 500), _subfield(where, "max_objects_per_run")
        ),
        queue_poll_seconds=_integer(1, 300)(value.get("queue_poll_seconds", 5), _subfield(where, "queue_poll_seconds")),
    )


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
    # The optional fields: their defaults are the parsed defaults of OPTIONAL_FIELDS.
    settle_grace: timedelta = field(default_factory=lambda: default_of("settle_grace"))
    staging_prefix: str = field(default_factory=lambda: default_of("staging_prefix"))
    quarantine_prefix: str = field(default_factory=lambda: default_of("quarantine_prefix"))
    error_prefix: str = field(default_factory=lambda: default_of("error_prefix"))
    tags: tuple[str, ...] = field(default_factory=lambda: default_of("tags"))
    owner: str = field(default_factory=lambda: default_of("owner"))
    max_record_bytes: int = field(default_factory=lambda: default_of("max_record_bytes"))
    # An hour whose objects total more than this (bytes as stored in S3) is extracted by several
    # tasks, each reading at most this much; see extract.extract_or_split.
    split_above_bytes: int = field(default_factory=lambda: default_of("split_above_bytes"))
    # Worker processes that decode and validate an extract task's objects side by side (1: in
    # the task's own process); never more than the CPUs the task may use. See records.pool.
    decode_processes: int = field(default_factory=lambda: default_of("decode_processes"))
    start_date: datetime = field(default_factory=lambda: default_of("start_date"))
    catchup: bool = field(default_factory=lambda: default_of("catchup"))
    audit_alert_threshold: int = field(default_factory=lambda: default_of("audit_alert_threshold"))
    audit_notifier: NotifierSpec = field(default_factory=lambda: default_of("audit_notifier"))
    realtime_writer: bool = field(default_factory=lambda: default_of("realtime_writer"))
    # Whether a version newer than an erased key's erased version (greater order_by) may load
    # again after the erasure; by default an erased key stays erased. See load.erase_keys.
    erased_keys_accept_newer: bool = field(default_factory=lambda: default_of("erased_keys_accept_newer"))
    # How many hours back the late sweep compares each hour's folder with the ledger (audit.sweep_hours).
    late_horizon_hours: int = field(default_factory=lambda: default_of("late_horizon_hours"))
    # How many hours in a row that load no object, after one that did, alert as a silence (0: never).
    silence_alert_hours: int = field(default_factory=lambda: default_of("silence_alert_hours"))
    # How long a session waits for a table lock (PostgreSQL) before the transaction is retried, how
    # long one statement may run, and how long one task try may run (Airflow's execution_timeout).
    lock_timeout_seconds: int = field(default_factory=lambda: default_of("lock_timeout_seconds"))
    statement_timeout_minutes: int = field(default_factory=lambda: default_of("statement_timeout_minutes"))
    task_timeout_minutes: int = field(default_factory=lambda: default_of("task_timeout_minutes"))
    # The Airflow pool of the stream's tasks that write the warehouse (None: the default pool).
    merge_pool: str | None = field(default_factory=lambda: default_of("merge_pool"))
    # The time zone Firehose renders the prefix's timestamps in (its CustomTimeZone), an IANA name.
    prefix_timezone: str = field(default_factory=lambda: default_of("prefix_timezone"))
    # The delivery stream's compression as Firehose names it; only needed where an object has no
    # magic bytes to tell (HADOOP_SNAPPY). See records.decoding.decompress.
    compression: str = field(default_factory=lambda: default_of("compression"))
    # What a field the records carry but the columns lack does: "ignore" (counted in schema_drift),
    # "report" (counted, and alerted once per field) or "add_columns" (a column is added and loaded,
    # load.add_new_columns). See docs/streams.md.
    new_fields: str = field(default_factory=lambda: default_of("new_fields"))
    # hourly (the ingest alone), or micro-batches within minutes of landing (poll, events); see microbatch.py.
    freshness: Freshness = field(default_factory=lambda: default_of("freshness"))

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
    def microbatch_dag_id(self) -> str:
        return f"microbatch_{self.name}"

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
class StreamError:
    """One refused entry of the streams file: the stream (its name, or ``streams[<index>]`` when it has
    no valid name), the field at fault (None when no one field is) and the whole message."""

    stream: str
    index: int
    field: str | None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class StreamsConfig:
    settings: Settings
    # The valid streams, in file order; the refused entries are in errors, never here.
    streams: tuple[Stream, ...]
    errors: tuple[StreamError, ...] = ()

    def error(self, name: str) -> StreamError | None:
        """The error of the refused stream of that name (or ``streams[<index>]``), if it was refused."""
        return next((error for error in self.errors if error.stream == name), None)

    def raise_errors(self) -> None:
        """Raise one ConfigError listing every refused stream, if any was refused."""
        if len(self.errors) == 1:
            raise ConfigError(self.errors[0].message)
        if self.errors:
            listed = "\n".join(f"  - {error.message}" for error in self.errors)
            raise ConfigError(f"{len(self.errors)} streams are refused:\n{listed}")

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)


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


def _integer(low: int, high: int | None = None) -> Callable[[Any, str], int]:
    """An integer in low..high (no booleans)."""
    accepted = (
        f"an integer {low}..{high}"
        if high is not None
        else ("a positive integer" if low == 1 else f"an integer >= {low}")
    )

    def parse(value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            raise ConfigError(f"{where}: must be {accepted}, got {value!r}")
        return value

    return parse


def _minutes(value: Any, where: str) -> timedelta:
    return timedelta(minutes=_integer(0, 24 * 60)(value, where))


def _prefix(*, allow_empty: bool) -> Callable[[Any, str], str]:
    return lambda value, where: _check_prefix(value, where, allow_empty=allow_empty)


def _firehose_prefix(kind: str) -> Callable[[Any, str], str]:
    """A prefix that may hold Firehose's expressions (prefixes.parse_prefix); refused with the reason."""

    def parse(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {value!r}")
        try:
            parse_prefix(value, "error_prefix" if kind == "error_prefix" else "prefix")
        except PrefixError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return value

    return parse


def _timezone(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: must be an IANA time zone name such as UTC or America/New_York, got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: {value!r} is not a known time zone (an IANA name such as UTC or America/New_York)"
        ) from None
    return value


# Firehose's CompressionFormat values; "auto" (the default) reads each object's magic bytes.
COMPRESSIONS = ("auto", "UNCOMPRESSED", "GZIP", "ZIP", "Snappy", "HADOOP_SNAPPY")


def _compression(value: Any, where: str) -> str:
    if value not in COMPRESSIONS:
        raise ConfigError(f"{where}: must be one of {', '.join(COMPRESSIONS)}, got {value!r}")
    return str(value)


def _owner(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {value!r}")
    return value


POOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")


def _pool(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not POOL_NAME.fullmatch(value):
        raise ConfigError(f"{where}: must be an Airflow pool name (letters, digits, '_', '.', '-'), got {value!r}")
    return value


def _tags(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ConfigError(f"{where}: must be a list of strings")
    return tuple(value)


def _start_date(value: Any, where: str) -> datetime:
    try:
        start = datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not an ISO 8601 date or time") from None
    start = start.replace(tzinfo=start.tzinfo or UTC).astimezone(UTC)
    if start.minute or start.second or start.microsecond:
        raise ConfigError(f"{where}: {value!r} must be on a whole hour")
    return start


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def parse(value: Any, where: str) -> str:
        if value not in choices:
            raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class OptionalField:
    """A stream field that may be left out: its name in the file, its default there, and how it is read."""

    name: str
    default: Any  # as written in the streams file
    parse: Callable[[Any, str], Any]  # (value, where) -> the Stream attribute's value, or ConfigError
    attribute: str  # the Stream attribute it sets


# One row per optional stream field; docs/streams.md lists the same fields with these defaults.
OPTIONAL_FIELDS = (
    OptionalField("prefix", "", _firehose_prefix("prefix"), "prefix"),
    OptionalField("settle_grace_minutes", 15, _minutes, "settle_grace"),
    OptionalField("staging_prefix", "firehose-loader/staging/", _prefix(allow_empty=False), "staging_prefix"),
    OptionalField("quarantine_prefix", "firehose-loader/quarantine/", _prefix(allow_empty=False), "quarantine_prefix"),
    OptionalField("error_prefix", "", _firehose_prefix("error_prefix"), "error_prefix"),
    OptionalField("tags", [], _tags, "tags"),
    OptionalField("owner", "data-engineering", _owner, "owner"),
    OptionalField("max_record_bytes", 1_048_576, _integer(1024), "max_record_bytes"),
    # 1 GiB of gzip objects is ~4 M records of 0.7 KB: about what one extract task holds in 1.5 GB (bench/results.md).
    OptionalField("split_above_bytes", 1 << 30, _integer(1), "split_above_bytes"),
    # On two cores two processes take about a third off the decoding of the bench's 1 M-record hour (bench/NOTES.md).
    OptionalField("decode_processes", 2, _integer(1, MAX_DECODE_PROCESSES), "decode_processes"),
    OptionalField("start_date", "2026-01-01T00:00:00+00:00", _start_date, "start_date"),
    OptionalField("catchup", False, _boolean, "catchup"),
    OptionalField("audit_alert_threshold", 0, _integer(0), "audit_alert_threshold"),
    # Another process (a "real-time" Lambda) writes into the table: its drops, doubles and older
    # versions are measured at each object's first merge (realtime_quality).
    OptionalField("realtime_writer", False, _boolean, "realtime_writer"),
    # An erased key stays erased (false), or a version with a greater order_by than the erased one loads again (true).
    OptionalField("erased_keys_accept_newer", False, _boolean, "erased_keys_accept_newer"),
    # Firehose retries S3 delivery for up to 24 h (Direct PUT) and a Kinesis source keeps records for
    # its retention (1 to 365 days, 24 h by default): the late sweep looks back 7 days unless told.
    OptionalField("late_horizon_hours", 168, _integer(24, 24 * 90), "late_horizon_hours"),
    # Firehose delivers at least one object per buffer interval (at most 15 min) while records flow:
    # two empty hours after a busy one are a finding. A stream quiet at night sets more (or 0).
    OptionalField("silence_alert_hours", 2, _integer(0, 24 * 7), "silence_alert_hours"),
    # A merge behind an idle-in-transaction writer gives up after a minute and is retried (and the
    # writers queued behind it go on); a statement or a task try that hangs fails and is retried.
    OptionalField("lock_timeout_seconds", 60, _integer(1, 3600), "lock_timeout_seconds"),
    OptionalField("statement_timeout_minutes", 60, _integer(1, 24 * 60), "statement_timeout_minutes"),
    OptionalField("task_timeout_minutes", 180, _integer(10, 48 * 60), "task_timeout_minutes"),
    # A pool of one slot shared by the streams of one Redshift cluster lets their merges wait in the
    # scheduler instead of in the warehouse behind the loader tables' lock (docs/deploy.md).
    OptionalField("merge_pool", None, _pool, "merge_pool"),
    OptionalField("audit_notifier", None, lambda value, where: parse_notifier(value, where), "audit_notifier"),
    OptionalField("prefix_timezone", "UTC", _timezone, "prefix_timezone"),
    OptionalField("compression", "auto", _compression, "compression"),
    # Fields the records carry that are not among the columns: counted in schema_drift always;
    # "report" also alerts (through audit_notifier) the first time the stream sees each one;
    # "add_columns" adds each as a nullable column of an inferred type (schema_history) and loads it.
    OptionalField("new_fields", "report", _choice("ignore", "report", "add_columns"), "new_fields"),
    OptionalField("freshness", None, _freshness, "freshness"),
)
REQUIRED_FIELDS = ("name", "bucket", "table", "key", "order_by", "columns")
STREAM_FIELDS = {*REQUIRED_FIELDS, *(spec.name for spec in OPTIONAL_FIELDS)}


def default_of(attribute: str) -> Any:
    """The value a Stream attribute takes when the streams file leaves its field out."""
    (spec,) = [spec for spec in OPTIONAL_FIELDS if spec.attribute == attribute]
    return spec.parse(spec.default, f"default of {spec.name}")


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

    optional = {
        spec.attribute: spec.parse(entry.get(spec.name, spec.default), f"{where}, field '{spec.name}'")
        for spec in OPTIONAL_FIELDS
    }
    if parse_prefix(optional["prefix"]).partition_keys and not optional["error_prefix"]:
        # Firehose itself requires an error prefix with dynamic partitioning; the loader needs it
        # to keep error output out of the partitions' folders.
        raise ConfigError(
            f"{where}, field 'error_prefix': a prefix with partition keys needs an error prefix "
            "(Firehose requires one with dynamic partitioning)"
        )
    return Stream(
        name=raw_name,
        bucket=bucket,
        schema=schema,
        table=table,
        key=key,
        order_by=order_by,
        columns=columns,
        **optional,
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


# Where a message names its field: "field 'x'", "streams[0].name", "missing required field 'x'", "unknown field(s) [...]".
FIELD_IN_MESSAGE = (
    re.compile(r"field '([A-Za-z0-9_.]+)"),
    re.compile(r"^streams\[\d+\]\.([a-z_]+)"),
    re.compile(r"missing required field '([a-z_]+)'"),
    re.compile(r"unknown field\(s\) \[([^\]]*)\]"),
)


def field_of(message: str) -> str | None:
    """The field a ConfigError's message names (``columns.price``, ``key``, ...), or None."""
    for pattern in FIELD_IN_MESSAGE:
        if match := pattern.search(message):
            return match.group(1).replace("'", "")
    return None


def _entry_name(entry: Any) -> str | None:
    """The entry's name if it is an accepted stream name (so an error can name the stream), else None."""
    name = entry.get("name") if isinstance(entry, Mapping) else None
    return name if isinstance(name, str) and STREAM_NAME.fullmatch(name) else None


def parse_settings(document: Any, source: str = "<streams>") -> tuple[Settings, list[Any]]:
    """The file-wide part: (settings, the raw stream entries). Raises ConfigError: there is no stream to keep."""
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
    return settings, entries


def parse_streams(document: Any, source: str = "<streams>") -> StreamsConfig:
    """Parse each stream on its own: the valid ones in ``streams``, one StreamError per refused entry.

    A name already used by an earlier entry (valid or not) and a table already fed by an earlier
    valid stream refuse the later entry; the earlier one keeps its DAGs. Errors of the file as a
    whole raise ConfigError.
    """
    settings, entries = parse_settings(document, source)
    streams: list[Stream] = []
    errors: list[StreamError] = []
    names: dict[str, int] = {}
    tables: dict[str, str] = {}
    for index, entry in enumerate(entries):
        name = _entry_name(entry)
        label = name or f"streams[{index}]"
        try:
            if name is not None and name in names:
                raise ConfigError(
                    f"stream {name!r} (streams[{index}]), field 'name': duplicate stream name, already declared "
                    f"by streams[{names[name]}]; this later entry is refused"
                )
            if name is not None:
                names[name] = index
            stream = parse_stream(entry, index)
            if stream.qualified_table in tables:
                raise ConfigError(
                    f"stream {stream.name!r}, field 'table': {stream.qualified_table} is already fed by stream "
                    f"{tables[stream.qualified_table]!r}; this later stream is refused"
                )
        except ConfigError as exc:
            errors.append(StreamError(stream=label, index=index, field=field_of(str(exc)), message=str(exc)))
            continue
        tables[stream.qualified_table] = stream.name
        streams.append(stream)
    return StreamsConfig(settings=settings, streams=tuple(streams), errors=tuple(errors))


def parse_config(document: Any, source: str = "<streams>") -> StreamsConfig:
    """The strict parse: every stream valid, or a ConfigError naming each refused stream and its field."""
    config = parse_streams(document, source)
    config.raise_errors()
    return config


def streams_file() -> Path:
    return Path(os.environ.get("STREAMS_CONFIG") or DEFAULT_STREAMS_FILE)


def read_document(path: Path | None = None) -> tuple[Any, Path]:
    """The streams file's YAML document and its path; ConfigError if it cannot be read or is not YAML."""
    path = path or streams_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read streams file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"streams file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.safe_load(text), path
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_streams(path: Path | None = None) -> StreamsConfig:
    """Read the streams file, keeping the valid streams and the errors of the refused ones (see parse_streams)."""
    document, path = read_document(path)
    return parse_streams(document, str(path))


def load_config(path: Path | None = None) -> StreamsConfig:
    """Read and validate the streams file (``$STREAMS_CONFIG`` or ``include/streams.yml``); raise on any error."""
    config = load_streams(path)
    config.raise_errors()
    return config


def check(path: Path | None = None) -> tuple[int, str]:
    """(exit code, report) for ``python -m firehose_loader.config``: 0 all valid, 1 a stream refused, 2 the file."""
    shown = path or streams_file()
    try:
        config = load_streams(path)
    except ConfigError as exc:
        return 2, f"{shown}: the whole file is refused, no stream is loaded: {exc}"
    lines = [
        f"{shown}: {len(config.streams)} stream(s) valid, {len(config.errors)} refused"
        + (f" (loader_schema {config.settings.loader_schema})" if config.streams else "")
    ]
    rows = sorted(
        [
            (index, stream.name, "ok", f"{stream.qualified_table}: {stream.ingest_dag_id}, {stream.audit_dag_id}")
            for index, stream in _indexed(config)
        ]
        + [
            (error.index, error.stream, "REFUSED", f"field {error.field or '?'}: {error.message}")
            for error in config.errors
        ]
    )
    lines += [f"  {status:<8} {name}  {text}" for _index, name, status, text in rows]
    return (1 if config.errors else 0), "\n".join(lines)


def _indexed(config: StreamsConfig) -> list[tuple[int, Stream]]:
    """The valid streams with their entry's index in the file (the refused entries take the other indices)."""
    refused = {error.index for error in config.errors}
    free = (index for index in range(len(config.streams) + len(config.errors)) if index not in refused)
    return list(zip(free, config.streams, strict=False))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m firehose_loader.config",
        description="Check a streams file: print each stream's status; exit 1 if a stream is refused, 2 if the file is.",
    )
    parser.add_argument(
        "file", nargs="?", type=Path, help="the streams file (default: $STREAMS_CONFIG or include/streams.yml)"
    )
    args = parser.parse_args(argv)
    code, report = check(args.file)
    print(report, file=sys.stderr if code == 2 else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
