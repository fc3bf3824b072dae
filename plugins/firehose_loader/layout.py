"""Which S3 keys belong to which hour, and when an hour counts as settled.

Firehose files an object under the UTC hour in which its oldest record arrived
(``<prefix>YYYY/MM/DD/HH/``) and buffers up to 15 minutes, so hour H can still
receive objects after H+1h; the loader waits a grace period and the audit picks
up anything later.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

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


def object_basename(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def run_token(run_id: str) -> str:
    """A run id made safe for an S3 key."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def quarantine_key(stream: Stream, hour: datetime, object_key: str, suffix: str = ".jsonl") -> str:
    return f"{stream.quarantine_prefix}{stream.name}/{hour_folder(hour)}{object_basename(object_key)}{suffix}"


def stage_key(stream: Stream, hour: datetime, run_id: str) -> str:
    return f"{stream.staging_prefix}{stream.name}/{hour_folder(hour)}{run_token(run_id)}.parquet"


def part_stage_key(stream: Stream, hour: datetime, run_id: str, index: int) -> str:
    # Not under the stage key as a prefix: Redshift's COPY would load the parts with the stage.
    return f"{stream.staging_prefix}{stream.name}/{hour_folder(hour)}{run_token(run_id)}.part-{index:04d}.parquet"
