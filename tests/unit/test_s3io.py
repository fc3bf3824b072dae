"""How S3 errors are classified: gone or rewritten between list and read, permanent, or transient.

Uses botocore's Stubber on a real S3 client: no network. The same cases against the moto server,
through a fault-injecting proxy and whole DAG runs, are tests/integration/test_s3_faults.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from firehose_loader import extract as extract_module
from firehose_loader.airflow import connections
from firehose_loader.config import Settings
from firehose_loader.s3io import ObjectChangedError, PermanentS3Error, list_folder, read_object, write_object
from tests.unit.stream_factory import make_stream

BUCKET, KEY = "firehose-orders", "orders/raw/2026/03/01/10/orders-1-a"


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y", endpoint_url="http://s3.test"
    )


def stubbed_error(client: Any, operation: str, code: str, status: int) -> Stubber:
    stubber = Stubber(client)
    stubber.add_client_error(operation, service_error_code=code, http_status_code=status)
    stubber.activate()
    return stubber


@pytest.mark.parametrize(("code", "status"), [("NoSuchKey", 404), ("404", 404)])
def test_a_listed_object_that_is_gone_is_named(client: Any, code: str, status: int) -> None:
    stubbed_error(client, "get_object", code, status)
    with pytest.raises(ObjectChangedError, match="deleted between list and read") as caught:
        read_object(client, BUCKET, KEY, etag="abc")
    assert (caught.value.bucket, caught.value.key) == (BUCKET, KEY)
    assert f"s3://{BUCKET}/{KEY}" in str(caught.value)


def test_a_missing_object_read_without_an_etag_does_not_exist(client: Any) -> None:
    stubbed_error(client, "get_object", "NoSuchKey", 404)
    with pytest.raises(ObjectChangedError, match="does not exist"):
        read_object(client, BUCKET, KEY)


def test_a_listed_object_rewritten_since_is_named(client: Any) -> None:
    stubbed_error(client, "get_object", "PreconditionFailed", 412)
    with pytest.raises(ObjectChangedError, match="rewritten between list and read: its ETag is no longer abc"):
        read_object(client, BUCKET, KEY, etag="abc")


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"])
def test_permanent_errors_name_the_object_and_what_to_fix(client: Any, code: str) -> None:
    stubbed_error(client, "get_object", code, 403)
    with pytest.raises(PermanentS3Error, match=f"{code} on s3://{BUCKET}/{KEY}"):
        read_object(client, BUCKET, KEY, etag="abc")


def test_permanent_errors_when_listing_and_writing(client: Any) -> None:
    listing = stubbed_error(client, "list_objects_v2", "AccessDenied", 403)
    with pytest.raises(PermanentS3Error, match="denied"):
        list_folder(client, BUCKET, "orders/raw/2026/03/01/10/")
    listing.deactivate()
    stubbed_error(client, "put_object", "NoSuchBucket", 404)
    with pytest.raises(PermanentS3Error, match="does not exist"):
        write_object(client, BUCKET, "stage.parquet", b"x", "application/octet-stream")


def test_transient_errors_are_raised_as_they_are_with_a_note_naming_the_object(client: Any) -> None:
    stubbed_error(client, "get_object", "SlowDown", 503)
    with pytest.raises(ClientError) as caught:
        read_object(client, BUCKET, KEY, etag="abc")
    assert caught.value.__notes__ == [f"while reading s3://{BUCKET}/{KEY}"]


def gone() -> ObjectChangedError:
    return ObjectChangedError(f"s3://{BUCKET}/{KEY} was listed but is gone", BUCKET, KEY)


def test_extract_lists_the_hour_again_when_an_object_vanished(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[Any] = [gone(), gone(), {"hour": "ok"}]
    calls: list[str] = []

    def extract(client: Any, stream: Any, hour: datetime, run_id: str, limits: Any) -> dict[str, Any]:
        calls.append(run_id)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(extract_module, "extract_or_split", extract)
    hour = datetime(2026, 3, 1, 10, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger="firehose_loader.extract"):
        assert extract_module.extract_listing_again(None, make_stream(), hour, "run") == {"hour": "ok"}
    assert calls == ["run"] * 3
    assert [record.getMessage().split("; ")[1] for record in caplog.records] == [
        "listing orders hour 2026-03-01T10:00:00+00:00 again (listing 2 of 3)",
        "listing orders hour 2026-03-01T10:00:00+00:00 again (listing 3 of 3)",
    ]
    assert all(KEY in record.getMessage() for record in caplog.records)


def test_extract_gives_up_after_its_listings_and_the_error_names_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    def extract(*args: Any) -> dict[str, Any]:
        raise gone()

    monkeypatch.setattr(extract_module, "extract_or_split", extract)
    with pytest.raises(ObjectChangedError, match=KEY):
        extract_module.extract_listing_again(None, make_stream(), datetime(2026, 3, 1, 10, tzinfo=UTC), "run")


def test_the_s3_client_retries_throttling_and_5xx_with_backoff_unless_the_connection_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RETRY_DEFAULT", '{"conn_type": "aws", "extra": {"region_name": "us-east-1"}}')
    monkeypatch.setenv(
        "AIRFLOW_CONN_RETRY_OWN",
        '{"conn_type": "aws", "extra": {"region_name": "us-east-1",'
        ' "config_kwargs": {"retries": {"mode": "adaptive", "max_attempts": 9}}}}',
    )
    default = connections.s3_client(Settings(aws_conn_id="retry_default"))
    assert default.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    own = connections.s3_client(Settings(aws_conn_id="retry_own"))
    assert own.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 10}  # botocore: 9 retries
