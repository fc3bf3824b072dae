"""The few S3 calls the loader makes, on a boto3 client (from the Amazon provider's S3Hook)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from firehose_loader.errors import PermanentError
from firehose_loader.layout import DeliveryLayout, KeyPattern

# Errors that no retry can fix: fail the task at once with a message that says what to change.
PERMANENT_ERRORS = {
    "NoSuchBucket": "bucket {bucket!r} does not exist: check the stream's 'bucket' and the AWS connection's account/region",
    "AccessDenied": "access to bucket {bucket!r} was denied: the Airflow role needs s3:ListBucket/GetObject on the prefix and s3:PutObject on the staging and quarantine prefixes",
    "AllAccessDisabled": "access to bucket {bucket!r} is disabled",
    "InvalidAccessKeyId": "the AWS access key of the connection is not valid: fix the AWS connection",
    "SignatureDoesNotMatch": "the AWS secret key of the connection does not match its access key: fix the AWS connection",
    "ExpiredToken": "the AWS session token has expired: refresh the credentials of the AWS connection",
}


class PermanentS3Error(PermanentError, RuntimeError):
    """An S3 error that retrying cannot fix."""


class ObjectChangedError(RuntimeError):
    """A listed object is gone (deleted between list and read) or was rewritten (its ETag changed).

    Nothing of the hour has been staged or merged when this is raised; listing the hour again
    and reading what is there then is the remedy (see ``extract.extract_listing_again``).
    """

    def __init__(self, message: str, bucket: str, key: str) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key


GONE_CODES = ("NoSuchKey", "404", "NotFound")
CHANGED_CODES = ("PreconditionFailed", "412")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int
    # When S3 last wrote the object, from the listing (the late sweep's lateness); not part of its identity.
    last_modified: datetime | None = field(default=None, compare=False)


def error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def raise_if_permanent(exc: Exception, bucket: str, key: str | None = None) -> None:
    code = error_code(exc)
    if code in PERMANENT_ERRORS:
        where = f" on s3://{bucket}/{key}" if key else ""
        raise PermanentS3Error(PERMANENT_ERRORS[code].format(bucket=bucket) + f" ({code}{where})") from exc


def _objects(page: dict[str, Any]) -> list[ObjectInfo]:
    return [
        ObjectInfo(item["Key"], item["ETag"].strip('"'), int(item["Size"]), item.get("LastModified"))
        for item in page.get("Contents", [])
    ]


def _list(client: Any, bucket: str, prefix: str, delimiter: bool) -> tuple[list[ObjectInfo], list[str]]:
    """(objects, sub-folders) under ``prefix``; with ``delimiter`` only those directly inside it."""
    objects: list[ObjectInfo] = []
    folders: list[str] = []
    arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        arguments["Delimiter"] = "/"
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(**arguments):
            objects += _objects(page)
            folders += [item["Prefix"] for item in page.get("CommonPrefixes", [])]
    except Exception as exc:
        raise_if_permanent(exc, bucket, prefix)
        exc.add_note(f"while listing s3://{bucket}/{prefix}")
        raise
    return objects, folders


def list_folder(client: Any, bucket: str, folder: str) -> list[ObjectInfo]:
    """Every object directly inside ``folder`` (which ends with '/'), sorted by key."""
    return sorted(_list(client, bucket, folder, delimiter=True)[0], key=lambda item: item.key)


def list_pattern(client: Any, bucket: str, pattern: KeyPattern) -> list[ObjectInfo]:
    """The objects whose keys match ``pattern``, with as few LIST calls as its shape allows.

    The known text up to the first value found by listing (a partition key, a random string) is
    listed: all at once when nothing after that value depends on the hour (one call per 1,000
    objects), else folder by folder, one call for the values of that level and one per value.
    Every key is then matched against the whole pattern, so nothing of another hour or another
    folder depth gets in.
    """
    found: list[ObjectInfo] = []
    pending = [("", 0)]
    segments = pattern.segments
    while pending:
        known, index = pending.pop()
        while index < len(segments) and segments[index].kind != "unknown":
            known += segments[index].text
            index += 1
        if index == len(segments):
            found += _list(client, bucket, known, delimiter=True)[0]
            continue
        if not any(segment.kind == "timed" for segment in segments[index:]):
            found += _list(client, bucket, known, delimiter=False)[0]
            continue
        level = pattern.level_regex(index)
        if level is None:  # the value is in the object names' lead: list the folder
            found += _list(client, bucket, known, delimiter=True)[0]
            continue
        regex, after = level
        for folder in _list(client, bucket, known, delimiter=True)[1]:
            if regex.fullmatch(folder[len(known) :]):
                pending.append((folder, after))
    return [item for item in found if pattern.matches(item.key)]


def list_hour_objects(client: Any, bucket: str, layout: DeliveryLayout, hour: datetime) -> list[ObjectInfo]:
    """The objects of the run of ``hour``: exact keys in the folders the layout puts that hour's data in.

    Every path that lists an hour (extract, audit, late sweep, ...) calls this. No sub-folders, no
    folder markers, nothing of another hour, and never the error output, even where the error
    prefix lies among the prefix's folders. Sorted by key.
    """
    objects = {
        item.key: item for pattern in layout.hour_patterns(hour) for item in list_pattern(client, bucket, pattern)
    }
    return sorted(
        (item for item in objects.values() if not layout.is_error_object(item.key, hour)),
        key=lambda item: item.key,
    )


def count_error_objects(client: Any, bucket: str, layout: DeliveryLayout, hour: datetime) -> int:
    """How many objects of error output (every error output type) Firehose wrote for the hour."""
    keys = {item.key for pattern in layout.error_patterns(hour) for item in list_pattern(client, bucket, pattern)}
    return len(keys)


def read_object(client: Any, bucket: str, key: str, etag: str | None = None) -> bytes:
    """The object's bytes; with ``etag``, only that version (a rewritten object fails instead of mixing versions).

    A missing object, or one whose ETag is no longer ``etag``, raises :class:`ObjectChangedError`
    naming it; a permanent error raises :class:`PermanentS3Error`; anything else (after the
    client's own retries) is raised as is, with a note naming the object.
    """
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        arguments["IfMatch"] = f'"{etag}"'
    try:
        return client.get_object(**arguments)["Body"].read()
    except Exception as exc:
        code = error_code(exc)
        if code in GONE_CODES:
            what = "was listed but is gone: deleted between list and read" if etag else "does not exist"
            raise ObjectChangedError(f"s3://{bucket}/{key} {what} ({code})", bucket, key) from exc
        if etag and code in CHANGED_CODES:
            raise ObjectChangedError(
                f"s3://{bucket}/{key} was rewritten between list and read: its ETag is no longer {etag} ({code})",
                bucket,
                key,
            ) from exc
        raise_if_permanent(exc, bucket, key)
        exc.add_note(f"while reading s3://{bucket}/{key}")
        raise


def object_exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in GONE_CODES:
            return False
        raise_if_permanent(exc, bucket, key)
        exc.add_note(f"while checking s3://{bucket}/{key}")
        raise
    return True


def write_object(client: Any, bucket: str, key: str, body: bytes | BinaryIO, content_type: str) -> None:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    except Exception as exc:
        raise_if_permanent(exc, bucket, key)
        exc.add_note(f"while writing s3://{bucket}/{key}")
        raise


def object_size(client: Any, bucket: str, key: str) -> int:
    """The object's size in bytes (a HEAD request); a missing object raises :class:`ObjectChangedError`."""
    try:
        return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except Exception as exc:
        if error_code(exc) in GONE_CODES:
            raise ObjectChangedError(f"s3://{bucket}/{key} does not exist", bucket, key) from exc
        raise_if_permanent(exc, bucket, key)
        exc.add_note(f"while checking s3://{bucket}/{key}")
        raise


def copy_manifest_body(bucket: str, files: Sequence[tuple[str, int]]) -> bytes:
    """A COPY manifest (Redshift's format) of these (key, size) files: each listed once, every one mandatory.

    A Parquet COPY needs each entry's ``meta.content_length``; ``mandatory`` makes a missing file
    fail the COPY instead of loading the hour without it.
    """
    keys = [key for key, _ in files]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"a COPY manifest lists each file once; got {sorted(key for key in keys if keys.count(key) > 1)}"
        )
    entries = [
        {"url": f"s3://{bucket}/{key}", "mandatory": True, "meta": {"content_length": size}} for key, size in files
    ]
    return json.dumps({"entries": entries}, indent=1).encode()


def copy_manifest_files(bucket: str, key: str, body: bytes) -> list[str]:
    """The keys a COPY manifest at ``key`` lists, in order; an entry outside ``bucket`` or not mandatory is refused."""
    files = []
    for entry in json.loads(body)["entries"]:
        url = entry["url"]
        if not url.startswith(f"s3://{bucket}/") or entry.get("mandatory") is not True:
            raise ValueError(f"s3://{bucket}/{key}: entry {url!r} is not a mandatory file of bucket {bucket!r}")
        files.append(url.removeprefix(f"s3://{bucket}/"))
    return files


def write_copy_manifest(client: Any, bucket: str, key: str, files: Sequence[str]) -> None:
    """Write the COPY manifest of these stage files (sizes from S3) at ``key``."""
    sized = [(file, object_size(client, bucket, file)) for file in files]
    write_object(client, bucket, key, copy_manifest_body(bucket, sized), "application/json")


def copy_object(client: Any, bucket: str, source_key: str, target_key: str) -> None:
    try:
        client.copy_object(Bucket=bucket, Key=target_key, CopySource={"Bucket": bucket, "Key": source_key})
    except Exception as exc:
        raise_if_permanent(exc, bucket, source_key)
        exc.add_note(f"while copying s3://{bucket}/{source_key} to {target_key}")
        raise
