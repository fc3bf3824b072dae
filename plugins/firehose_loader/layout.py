"""Which S3 keys belong to which hour, and when an hour counts as settled.

Firehose files an object under the UTC hour in which its oldest record arrived
(``<prefix>YYYY/MM/DD/HH/``) and buffers up to 15 minutes, so hour H can still
receive objects after H+1h; the loader waits a grace period and the audit picks
up anything later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from firehose_loader.config import Stream

HOUR = timedelta(hours=1)


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
    """True for an object directly inside the hour's folder (no sub-folders, no folder markers)."""
    folder = hour_prefix(prefix, hour)
    if not key.startswith(folder):
        return False
    name = key[len(folder) :]
    return bool(name) and "/" not in name


HOUR_FOLDER = re.compile(r"(\d{4})/(\d{2})/(\d{2})/(\d{2})/")


def hour_of_object(key: str, prefix: str) -> datetime | None:
    """The hour whose folder holds the object ``key`` directly (as :func:`is_hour_object` says), or None."""
    match = HOUR_FOLDER.match(key, len(prefix)) if key.startswith(prefix) else None
    if match is None:
        return None
    try:
        year, month, day, hour_of_day = (int(part) for part in match.groups())
        hour = datetime(year, month, day, hour_of_day, tzinfo=UTC)
    except ValueError:
        return None
    return hour if is_hour_object(key, prefix, hour) else None


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
    # Not under the stage key as a prefix: Redshift's COPY would load the parts with the stage.
    return f"{_stage_stem(stream, hour, writer)}.part-{index:04d}.parquet"
