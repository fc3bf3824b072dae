"""Which S3 keys belong to which hour, and when an hour counts as settled.

Firehose files an object under the hour in which its oldest record arrived and buffers up to
15 minutes, so hour H can still receive objects after H+1h; the loader waits a grace period and
the audit picks up anything later. By default the folder is ``<prefix>YYYY/MM/DD/HH/`` in UTC; a
stream's :class:`DeliveryLayout` says where its folders are (a prefix with Firehose's
expressions, see :mod:`firehose_loader.prefixes`) and in which time zone their hours are.

A run's hour is a UTC hour [H, H+1h). It covers the folders whose local hour *ends* within
(H, H+1h]: in UTC or any zone a whole number of hours away that is the one folder of that hour.
On the day a zone's clocks go back, its repeated local hour (01:00-02:00 twice in
America/New_York) is one folder spanning two UTC hours: the run of the second of them covers it,
and the run of the first covers no folder (an empty hour). On the day clocks go forward the
skipped local hour has no folder and every run covers one. In a zone half an hour away, the run
of H covers the folder [H-30min, H+30min).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from firehose_loader.prefixes import (
    ERROR_OUTPUT_TYPES,
    ErrorOutputType,
    PartitionKey,
    PrefixTemplate,
    Text,
    TimeField,
    parse_prefix,
)

if TYPE_CHECKING:
    from firehose_loader.config import Stream

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
TINY = timedelta(microseconds=1)


def hour_start(moment: datetime) -> datetime:
    """The UTC hour containing ``moment``; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; hours are UTC")
    utc = moment.astimezone(UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as the naive UTC timestamp the loader's tables store."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def hour_folder(hour: datetime) -> str:
    """``YYYY/MM/DD/HH/`` of an hour, with the trailing slash that keeps hour 01 away from 10-19."""
    return hour_start(hour).strftime("%Y/%m/%d/%H/")


def hour_prefix(prefix: str, hour: datetime) -> str:
    return f"{prefix}{hour_folder(hour)}"


def is_hour_object(key: str, prefix: str, hour: datetime) -> bool:
    """True for an object directly inside the hour's folder of a plain prefix in UTC (no sub-folders, no folder markers)."""
    return default_layout(prefix).is_hour_object(key, hour_start(hour))


def object_basename(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def run_token(run_id: str) -> str:
    """A run id made safe for an S3 key."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def quarantine_key(stream: Stream, hour: datetime, object_key: str, suffix: str = ".jsonl") -> str:
    return f"{stream.quarantine_prefix}{stream.name}/{hour_folder(hour)}{object_basename(object_key)}{suffix}"


# The DAGs (and the audit DAG's late sweep) that write stages: they share a timetable, so a run
# id alone does not tell their stages apart.
StageKind = Literal["ingest", "audit", "sweep", "microbatch"]
STAGE_KINDS: tuple[StageKind, ...] = ("ingest", "audit", "sweep", "microbatch")


TASK_NAME = re.compile(r"[a-z][a-z_]{0,62}")


@dataclass(frozen=True)
class StageWriter:
    """The one task try that writes a stage: which DAG (``kind``), which run, which task, which try."""

    kind: StageKind
    run_id: str
    task: str
    try_number: int

    def __post_init__(self) -> None:
        if self.kind not in STAGE_KINDS:
            raise ValueError(f"a stage is written by one of {STAGE_KINDS}, not {self.kind!r}")
        if not self.run_id:
            raise ValueError("a stage writer needs a run id")
        if not isinstance(self.task, str) or not TASK_NAME.fullmatch(self.task):
            raise ValueError(f"a stage writer's task is a lower-case task id, got {self.task!r}")
        if isinstance(self.try_number, bool) or not isinstance(self.try_number, int) or self.try_number < 1:
            raise ValueError(f"a try number is a whole number from 1, got {self.try_number!r}")


def _stage_stem(stream: Stream, hour: datetime, writer: StageWriter) -> str:
    # ``<kind>/<run>/<task>.try-NNNN``: the run token has no "/", the task name no ".", and the
    # try's digits are always followed by ".", so no writer's stem is a prefix of another's.
    return (
        f"{stream.staging_prefix}{stream.name}/{hour_folder(hour)}"
        f"{writer.kind}/{run_token(writer.run_id)}/{writer.task}.try-{writer.try_number:04d}"
    )


def stage_key(stream: Stream, hour: datetime, writer: StageWriter) -> str:
    """Where one task try stages an hour: no other run, DAG or try writes it, and it is no other stage's prefix."""
    return f"{_stage_stem(stream, hour, writer)}.parquet"


def part_stage_key(stream: Stream, hour: datetime, writer: StageWriter, index: int) -> str:
    # Not under the stage key as a prefix: a COPY of a key prefix would load the parts with the stage.
    return f"{_stage_stem(stream, hour, writer)}.part-{index:04d}.parquet"


# A key ending so is a COPY manifest (Redshift's format): a split hour's stage, or the manifest of one stage file.
COPY_MANIFEST_SUFFIX = ".manifest"


def split_stage_key(stream: Stream, hour: datetime, writer: StageWriter) -> str:
    """Where one task try writes a split hour's stage: the COPY manifest of its part stages."""
    return f"{_stage_stem(stream, hour, writer)}{COPY_MANIFEST_SUFFIX}"


def copy_manifest_key(stage_file_key: str) -> str:
    """The COPY manifest of one stage file: beside it, and written only from it (so any writer writes the same)."""
    return f"{stage_file_key}{COPY_MANIFEST_SUFFIX}"


def key_file_key(stage_file_key: str) -> str:
    """A stage file's key file: its rows' key, order_by and provenance, what a lock-free audit compares."""
    return f"{stage_file_key.removesuffix('.parquet')}.keys.parquet"


def key_manifest_key(split_key: str) -> str:
    """A split hour's COPY manifest of its parts' key files, beside the manifest of the part stages."""
    return f"{split_key.removesuffix(COPY_MANIFEST_SUFFIX)}.keys{COPY_MANIFEST_SUFFIX}"


def is_split_stage(key: str) -> bool:
    """Whether a stage key names a split hour's part stages (a COPY manifest) rather than one stage file."""
    return key.endswith(COPY_MANIFEST_SUFFIX)


# -- Delivery layouts: where a stream's hour folders are ------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A run of a key pattern: literal text (``text``), a time field rendered for the hour
    (``timed``), or a value found by listing (``unknown``, matched as one folder name)."""

    kind: Literal["text", "timed", "unknown"]
    text: str = ""


UNKNOWN_VALUE = r"[^/]+"


@dataclass(frozen=True)
class KeyPattern:
    """The keys of one folder (or, with partition keys, one set of folders) of one hour.

    ``segments`` are split so that a ``/`` only ever ends a text or timed segment; a key matches
    when it is the segments followed by an object name (no ``/``, not empty).
    """

    segments: tuple[Segment, ...]
    regex: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def of(cls, segments: list[Segment]) -> KeyPattern:
        split: list[Segment] = []
        for segment in segments:
            if segment.kind == "unknown":
                split.append(segment)
                continue
            for part in re.findall(r"[^/]*/|[^/]+", segment.text):
                split.append(Segment(segment.kind, part))
        body = "".join(UNKNOWN_VALUE if seg.kind == "unknown" else re.escape(seg.text) for seg in split)
        return cls(tuple(split), re.compile(body + r"[^/]+"))

    def matches(self, key: str) -> bool:
        return self.regex.fullmatch(key) is not None

    def level_regex(self, start: int) -> tuple[re.Pattern[str], int] | None:
        """The pattern of ``segments[start:]`` up to and including the next ``/``, and the index after it."""
        parts = []
        for index in range(start, len(self.segments)):
            segment = self.segments[index]
            parts.append(UNKNOWN_VALUE if segment.kind == "unknown" else re.escape(segment.text))
            if segment.kind != "unknown" and segment.text.endswith("/"):
                return re.compile("".join(parts)), index + 1
        return None


@lru_cache(maxsize=4096)
def _render(template: PrefixTemplate, local_hour: datetime, error_output_type: str | None) -> KeyPattern:
    segments: list[Segment] = []
    for piece in template.pieces:
        if isinstance(piece, Text):
            segments.append(Segment("text", piece.text))
        elif isinstance(piece, TimeField):
            segments.append(Segment("timed", piece.render(local_hour)))
        elif isinstance(piece, ErrorOutputType):
            segments.append(Segment("text", error_output_type or ""))
        else:
            segments.append(Segment("unknown"))
    return KeyPattern.of(segments)


@lru_cache(maxsize=256)
def _key_regex(template: PrefixTemplate) -> re.Pattern[str]:
    """Any key of the template, with the time fields as groups (``year0``, ``hour1``, ...)."""
    parts = []
    for index, piece in enumerate(template.pieces):
        if isinstance(piece, Text):
            parts.append(re.escape(piece.text))
        elif isinstance(piece, TimeField):
            parts.append(f"(?P<{piece.field}{index}>{piece.regex})")
        elif isinstance(piece, ErrorOutputType):
            parts.append("(?:" + "|".join(map(re.escape, ERROR_OUTPUT_TYPES)) + ")")
        else:
            parts.append(UNKNOWN_VALUE)
    return re.compile("".join(parts) + r"[^/]+")


@dataclass(frozen=True)
class DeliveryLayout:
    """Where a stream's objects and error output are: its prefix and error prefix (parsed
    templates) and the time zone Firehose renders their timestamps in."""

    prefix: PrefixTemplate
    error_prefix: PrefixTemplate
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def folder_hours(self, hour: datetime) -> tuple[datetime, ...]:
        """The local hours (naive, on the wall clock of ``timezone``) of the folders the run of ``hour`` covers.

        The folders whose local hour ends within (H, H+1h]: one for most hours, none for the
        first UTC hour of a repeated local hour, whose folder the next run covers.
        """
        return _folder_hours(self.timezone, hour_start(hour))

    def hour_patterns(self, hour: datetime) -> list[KeyPattern]:
        """The key patterns of the run's data: one per folder hour."""
        return [_render(self.prefix, local, None) for local in self.folder_hours(hour)]

    def error_patterns(self, hour: datetime) -> list[KeyPattern]:
        """The key patterns of the hour's error output: one per folder hour and error output type."""
        types = ERROR_OUTPUT_TYPES if self.error_prefix.has_error_output_type else (None,)
        return [
            _render(self.error_prefix, local, output_type) for local in self.folder_hours(hour) for output_type in types
        ]

    def is_error_object(self, key: str, hour: datetime) -> bool:
        return any(pattern.matches(key) for pattern in self.error_patterns(hour))

    def is_hour_object(self, key: str, hour: datetime) -> bool:
        """True for an object of the hour's folders (no sub-folders, no folder markers), never error output."""
        return any(pattern.matches(key) for pattern in self.hour_patterns(hour)) and not self.is_error_object(key, hour)

    def hour_of_key(self, key: str) -> datetime | None:
        """The UTC hour whose run covers the key's folder; None for a key outside the layout."""
        match = _key_regex(self.prefix).fullmatch(key)
        if match is None:
            return None
        values: dict[str, set[int]] = {}
        for name, text in match.groupdict().items():
            values.setdefault(name.rstrip("0123456789"), set()).add(int(text))
        if any(len(found) != 1 for found in values.values()):
            return None  # two instances of one field that disagree: not a key Firehose wrote
        year = values["year"].pop()
        if any(isinstance(p, TimeField) and p.field == "year" and p.width == 2 for p in self.prefix.pieces):
            year += 2000
        try:
            local = datetime(year, values["month"].pop(), values["day"].pop(), values["hour"].pop())
        except ValueError:
            return None
        return _run_hour_of_folder(self.timezone, local)

    @property
    def partition_keys(self) -> tuple[PartitionKey, ...]:
        return self.prefix.partition_keys

    def folder_of(self, moment: datetime, partition_values: Mapping[str, str] | None = None) -> str:
        """The folder Firehose writes an object to whose oldest record arrived at ``moment``
        (what a simulated delivery stream needs; the loader itself only lists)."""
        if moment.tzinfo is None:
            raise ValueError(f"{moment!r} has no time zone")
        local = _local_hour(self.zone, moment)
        values = partition_values or {}
        parts = []
        for piece in self.prefix.pieces:
            if isinstance(piece, Text):
                parts.append(piece.text)
            elif isinstance(piece, TimeField):
                parts.append(piece.render(local))
            elif isinstance(piece, PartitionKey):
                if piece.name not in values:
                    raise ValueError(f"no value for partition key {piece.name!r}")
                parts.append(values[piece.name])
            else:
                raise ValueError(f"{piece!r} has no value a simulator can give")
        return "".join(parts)

    @property
    def is_default(self) -> bool:
        """The layout of a plain prefix in UTC: ``<prefix>YYYY/MM/DD/HH/``."""
        return not self.prefix.written_with_expressions and self.timezone == "UTC"


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return UTC_ZONE if name == "UTC" else ZoneInfo(name)


UTC_ZONE = ZoneInfo("UTC")


def _local_hour(zone: ZoneInfo, moment: datetime) -> datetime:
    return moment.astimezone(zone).replace(minute=0, second=0, microsecond=0, tzinfo=None, fold=0)


@lru_cache(maxsize=4096)
def _folder_hours(timezone: str, hour: datetime) -> tuple[datetime, ...]:
    zone = _zone(timezone)
    if timezone == "UTC":
        return (hour.replace(tzinfo=None),)
    ends = []
    # Every zone's offset and transition lies on a whole minute: a folder can only end on one.
    for minutes in range(1, 61):
        moment = hour + minutes * MINUTE
        before = _local_hour(zone, moment - TINY)
        if _local_hour(zone, moment) != before:
            ends.append(before)
    return tuple(ends)


@lru_cache(maxsize=4096)
def _run_hour_of_folder(timezone: str, local: datetime) -> datetime | None:
    """The UTC hour whose run covers the folder of local hour ``local``; None if the zone skips that hour."""
    zone = _zone(timezone)
    candidates = {
        hour_start(local.replace(tzinfo=zone, fold=fold)) + offset * HOUR for fold in (0, 1) for offset in (-1, 0, 1, 2)
    }
    for hour in sorted(candidates):
        if local in _folder_hours(timezone, hour):
            return hour
    return None


def default_layout(prefix: str = "", error_prefix: str = "") -> DeliveryLayout:
    """The layout of a plain prefix in UTC (``<prefix>YYYY/MM/DD/HH/``), as the tools and benchmarks write it."""
    return DeliveryLayout(parse_prefix(prefix), parse_prefix(error_prefix, "error_prefix"))


def stream_layout(stream: Stream) -> DeliveryLayout:
    """The stream's layout, from its ``prefix``, ``error_prefix`` and ``prefix_timezone``."""
    return DeliveryLayout(
        parse_prefix(stream.prefix), parse_prefix(stream.error_prefix, "error_prefix"), stream.prefix_timezone
    )
