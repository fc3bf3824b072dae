"""What a micro-batch takes: the events only name hours, the listing and the ledger decide what loads.

S3 notifications are at-least-once, can be late or lost, a multipart upload sends two, the first
message of a new notification is ``s3:TestEvent``, and keys arrive URL-encoded. None of that may
change what is loaded: the objects of the listed hours that the ledger lacks at their ETag.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

from firehose_loader.dashboard.model import FIRST_MERGED_BY_MICROBATCH
from firehose_loader.layout import stream_layout
from firehose_loader.microbatch import (
    MEASURED_BY,
    EventKey,
    batch_hours,
    choose_objects,
    event_keys,
    hours_named,
    messages_of_asset_events,
)
from firehose_loader.s3io import ObjectInfo
from tests.unit.stream_factory import make_stream

NOW = datetime(2026, 3, 3, 10, 20, tzinfo=UTC)
H10, H09 = datetime(2026, 3, 3, 10, tzinfo=UTC), datetime(2026, 3, 3, 9, tzinfo=UTC)
BUCKET, PREFIX = "firehose-orders", "orders/raw/"


def s3_message(*keys: str, event: str = "ObjectCreated:Put", bucket: str = BUCKET, encode: bool = True) -> dict:
    records = [
        {
            "eventSource": "aws:s3",
            "eventName": event,
            "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="") if encode else key}},
        }
        for key in keys
    ]
    return {"MessageId": "m", "ReceiptHandle": "r", "Body": json.dumps({"Records": records})}


TEST_EVENT = {"Body": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET})}


def key(hour: datetime, name: str) -> str:
    return f"{PREFIX}{hour:%Y/%m/%d/%H}/{name}"


def listed(hour: datetime, *names: str, etag: str = "e1", minute: int = 0) -> list[ObjectInfo]:
    return [ObjectInfo(key(hour, name), etag, 10, hour + timedelta(minutes=minute + i)) for i, name in enumerate(names)]


def test_a_test_event_and_a_deletion_name_nothing() -> None:
    deleted = s3_message(key(H10, "a"), event="ObjectRemoved:Delete")
    assert event_keys([TEST_EVENT, deleted, {"Body": "not json"}, {"Body": json.dumps([1])}]) == []


def test_keys_are_url_decoded_slashes_and_spaces_included() -> None:
    name = key(H10, "stream-1 2026+03=x")
    assert quote_plus(name, safe="") != name and "%2F" in quote_plus(name, safe="")
    assert event_keys([s3_message(name)]) == [EventKey(BUCKET, name)]
    assert hours_named(make_stream(), event_keys([s3_message(name)]), NOW) == {H10}


def test_two_events_of_one_multipart_object_name_it_once() -> None:
    name = key(H09, "big")
    messages = [s3_message(name, event="ObjectCreated:CompleteMultipartUpload"), s3_message(name)]
    assert event_keys(messages) == [EventKey(BUCKET, name)]


def test_sns_and_eventbridge_messages_name_their_objects() -> None:
    name = key(H10, "a b")
    sns = {"Body": json.dumps({"Type": "Notification", "Message": s3_message(name)["Body"]})}
    bridge = {
        "Body": json.dumps(
            {
                "source": "aws.s3",
                "detail-type": "Object Created",
                "detail": {"bucket": {"name": BUCKET}, "object": {"key": name}},
            }
        )
    }
    assert event_keys([sns]) == event_keys([bridge]) == [EventKey(BUCKET, name)]


def test_only_this_streams_bucket_prefix_and_horizon_name_hours() -> None:
    stream = make_stream()
    old = NOW - timedelta(hours=stream.late_horizon_hours + 2)
    keys = [
        EventKey("another-bucket", key(H10, "a")),
        EventKey(BUCKET, f"other/{H10:%Y/%m/%d/%H}/a"),
        EventKey(BUCKET, key(H10, "deeper/a")),  # not directly in the hour folder
        EventKey(BUCKET, key(old, "a")),  # beyond the late sweep's horizon
        EventKey(BUCKET, key(NOW + timedelta(hours=2), "a")),  # in the future
        EventKey(BUCKET, key(datetime(2026, 3, 1, 4, tzinfo=UTC), "late")),
    ]
    assert hours_named(stream, keys, NOW) == {datetime(2026, 3, 1, 4, tzinfo=UTC)}


def test_the_run_reads_the_messages_of_every_triggering_asset_event() -> None:
    class AssetEvent:
        def __init__(self, extra: dict[str, Any]) -> None:
            self.extra = extra

    first, second = s3_message(key(H10, "a")), s3_message(key(H10, "b"))
    events = [
        AssetEvent({"from_trigger": True, "payload": {"status": "success", "message_batch": [first]}}),
        AssetEvent({"from_trigger": True, "payload": {"status": "success", "message_batch": [second, TEST_EVENT]}}),
        AssetEvent({}),  # an event from elsewhere (a manual one) carries no messages
    ]
    assert messages_of_asset_events(events) == [first, second, TEST_EVENT]


def test_a_batch_lists_the_previous_and_the_current_hour_and_the_named_ones() -> None:
    late = datetime(2026, 3, 1, 4, tzinfo=UTC)
    assert batch_hours(NOW) == [H09, H10]
    assert batch_hours(NOW, [late, H10]) == [late, H09, H10]


def test_an_object_already_in_the_ledger_is_not_taken_again_a_changed_one_is() -> None:
    listings = {H09: listed(H09, "a", "b"), H10: listed(H10, "c")}
    loaded = {H09: {key(H09, "a"): "e1", key(H09, "b"): "old-etag"}, H10: {key(H10, "c"): "e1"}}
    chosen = choose_objects(listings, loaded, limit=100)
    assert {hour: [item.key for item in items] for hour, items in chosen.items()} == {H09: [key(H09, "b")]}


def test_an_object_whose_event_was_lost_is_taken_by_the_listing() -> None:
    # No message named it: the hours listed are the open ones all the same.
    hours = batch_hours(NOW, hours_named(make_stream(), event_keys([]), NOW))
    listings = {hour: listed(hour, "unannounced") if hour == H10 else [] for hour in hours}
    assert [item.key for item in choose_objects(listings, {}, limit=100)[H10]] == [key(H10, "unannounced")]


def test_a_run_takes_at_most_its_limit_oldest_landing_first() -> None:
    listings = {H09: listed(H09, "z", minute=30), H10: listed(H10, "a", "b", "c")}
    chosen = choose_objects(listings, {}, limit=2)
    assert {hour: [item.key for item in items] for hour, items in chosen.items()} == {
        H09: [key(H09, "z")],
        H10: [key(H10, "a")],
    }
    rest = choose_objects(listings, {H09: {key(H09, "z"): "e1"}, H10: {key(H10, "a"): "e1"}}, limit=2)
    assert [item.key for item in rest[H10]] == [key(H10, "b"), key(H10, "c")]


def test_the_hour_of_an_object_is_the_folder_that_holds_it_directly() -> None:
    hour_of_object = stream_layout(make_stream(prefix=PREFIX)).hour_of_key
    assert hour_of_object(key(H10, "a")) == H10
    assert hour_of_object(key(H10, "sub/a")) is None
    assert hour_of_object(f"{PREFIX}2026/13/01/00/a") is None
    assert hour_of_object(f"{PREFIX}2026/03/03/10/") is None
    assert hour_of_object(f"elsewhere/{H10:%Y/%m/%d/%H}/a") is None


def test_the_dashboard_knows_a_micro_batchs_first_merge_by_its_name() -> None:
    assert MEASURED_BY == FIRST_MERGED_BY_MICROBATCH
