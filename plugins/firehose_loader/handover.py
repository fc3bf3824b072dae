"""What one task hands the next through XCom: plain JSON, typed.

An hour's extract gives an :class:`Extracted`: the :class:`Manifest` of its stage, or for an
hour over the stream's ``split_above_bytes`` the :class:`Part` s to extract apart. Each part's
extract gives a :class:`PartResult`; combining them gives the hour's manifest, which the load
step merges. Each shape has one builder here, so every task writes it the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from firehose_loader.s3io import ObjectInfo

if TYPE_CHECKING:  # the DAG files import this module; parsing them must not import the data plane
    from firehose_loader.records.validate import ObjectStats


class ObjectEntry(TypedDict):
    """One object's account, as the ledger stores it."""

    key: str
    etag: str
    size: int
    compression: str
    records_raw: int
    records_valid: int
    records_quarantined: int
    records_duplicate: int
    status: str
    message: str | None
    quarantine_key: str | None
    # Fields of the object's records that the stream does not declare: {name, records, json_types, sample}.
    new_fields: NotRequired[list[dict[str, Any]]]
    # When S3 last wrote the object (its listing's LastModified, ISO 8601 UTC): the landing moment
    # object_commits measures freshness from. None when the listing did not say.
    landed_at: str | None


class Manifest(TypedDict):
    """One staged hour: what the load step merges, and the account of every object in it."""

    stream: str
    hour: str  # ISO 8601, UTC
    stage_key: str | None  # None when the hour has no valid rows
    rows: int | None  # None when not counted (an audit merging a stage that is already loaded)
    objects: list[ObjectEntry]
    error_objects: int
    part_stage_keys: list[str | None]  # the stages of a split hour's parts (empty when not split)
    # When the hour's objects were listed (ISO 8601, UTC): a merge leaves a ledger from a later
    # listing as it is. None only for a manifest that writes no ledger and knows no listing.
    listed_at: str | None
    # The stage's columns and their declared types (records.schema.columns_text); absent in a
    # manifest from before they were recorded, when the stage file's metadata says.
    stage_columns: NotRequired[str | None]


class ListedObject(TypedDict):
    key: str
    etag: str
    size: int
    last_modified: str | None  # ISO 8601 UTC, from the listing


class Part(TypedDict):
    """A group of a split hour's objects, extracted by one task."""

    index: int
    hour: str
    objects: list[ListedObject]
    listed_at: str  # when the hour was listed (ISO 8601, UTC); the combined manifest's listed_at


class PartResult(TypedDict):
    index: int
    stage_key: str | None
    rows: int
    objects: list[ObjectEntry]


class Extracted(TypedDict):
    """An hour's extract: its manifest, or (manifest None) the parts it was split into."""

    manifest: Manifest | None
    parts: list[Part]


def make_object_entry(stats: ObjectStats, quarantine_key: str | None, landed_at: datetime | None = None) -> ObjectEntry:
    return ObjectEntry(
        key=stats.key,
        etag=stats.etag,
        size=stats.size,
        compression=stats.compression,
        records_raw=stats.records_raw,
        records_valid=stats.records_valid,
        records_quarantined=stats.records_quarantined,
        records_duplicate=stats.records_duplicate,
        status=stats.status,
        message=stats.message,
        quarantine_key=quarantine_key,
        new_fields=[
            {"name": new.name, "records": new.records, "json_types": list(new.json_types), "sample": new.sample}
            for new in stats.new_fields
        ],
        landed_at=None if landed_at is None else utc_text(landed_at),
    )


def make_manifest(
    stream: str,
    hour: datetime,
    stage_key: str | None,
    rows: int | None,
    objects: list[ObjectEntry],
    error_objects: int,
    part_stage_keys: list[str | None] | None = None,
    *,
    listed_at: datetime | None,
    stage_columns: str | None = None,
) -> Manifest:
    return Manifest(
        stream=stream,
        hour=hour.isoformat(),
        stage_key=stage_key,
        rows=rows,
        objects=objects,
        error_objects=error_objects,
        part_stage_keys=part_stage_keys or [],
        listed_at=None if listed_at is None else utc_text(listed_at),
        stage_columns=stage_columns,
    )


def make_part(index: int, hour: datetime, objects: list[ObjectInfo], listed_at: datetime) -> Part:
    return Part(
        index=index,
        hour=hour.isoformat(),
        objects=[
            ListedObject(
                key=item.key,
                etag=item.etag,
                size=item.size,
                last_modified=None if item.last_modified is None else utc_text(item.last_modified),
            )
            for item in objects
        ],
        listed_at=utc_text(listed_at),
    )


def utc_text(moment: datetime) -> str:
    """An aware moment as ISO 8601 text in UTC; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; the handover speaks UTC")
    return moment.astimezone(UTC).isoformat()


def listed_at(handed: Manifest | Part) -> datetime | None:
    """When the hour of a manifest or part was listed, as an aware UTC datetime (None if unknown)."""
    text = handed.get("listed_at")
    return None if text is None else datetime.fromisoformat(text)


def listed_objects(part: Part) -> list[ObjectInfo]:
    return [
        ObjectInfo(
            key=item["key"], etag=item["etag"], size=item["size"], last_modified=_moment(item.get("last_modified"))
        )
        for item in part["objects"]
    ]


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def make_part_result(index: int, stage_key: str | None, rows: int, objects: list[ObjectEntry]) -> PartResult:
    return PartResult(index=index, stage_key=stage_key, rows=rows, objects=objects)


def handed_hour(handed: Manifest | Part) -> datetime:
    """The hour a manifest or part is about, as an aware UTC datetime."""
    return datetime.fromisoformat(handed["hour"])
