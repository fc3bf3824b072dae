"""Which S3 keys belong to which hour, and when an hour counts as settled.

Firehose files an object under the UTC hour in which its oldest record arrived
(``<prefix>YYYY/MM/DD/HH/``) and buffers up to 15 minutes, so hour H can still
receive objects after H+1h; the loader waits a grace period and the audit picks
up anything later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)


def hour_start(moment: datetime) -> datetime:
    """The UTC hour containing ``moment``; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; hours are UTC")
    utc = moment.astimezone(UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def hours_in_interval(start: datetime, end: datetime) -> list[datetime]:
    """The hours [start, end) covers; both ends must sit on an hour boundary."""
    first, last = hour_start(start), hour_start(end)
    if first != start.astimezone(UTC) or last != end.astimezone(UTC):
        raise ValueError(f"data interval {start.isoformat()}..{end.isoformat()} is not aligned to whole hours")
    if last <= first:
        raise ValueError(f"data interval {start.isoformat()}..{end.isoformat()} is empty")
    count = (last - first) // HOUR
    return [first + index * HOUR for index in range(count)]


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


def settled_at(hour: datetime, grace: timedelta) -> datetime:
    """When an hour's folder is expected to be complete: its end plus the buffering grace."""
    return hour_start(hour) + HOUR + grace


def object_basename(key: str) -> str:
    return key.rsplit("/", 1)[-1]
