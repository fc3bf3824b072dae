"""Firehose prefix expressions: every form parses into its typed template, every refusal names its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from firehose_loader.config import ConfigError
from firehose_loader.layout import DeliveryLayout
from firehose_loader.prefixes import (
    ErrorOutputType,
    PartitionKey,
    PrefixError,
    RandomString,
    Text,
    TimeField,
    parse_prefix,
)
from tests.unit.stream_factory import make_stream

HOUR = datetime(2026, 3, 1, 7, tzinfo=UTC)
YEAR, MONTH, DAY, HOUR_FIELD = (
    TimeField("year", 4),
    TimeField("month", 2),
    TimeField("day", 2),
    TimeField("hour", 2),
)


def folder(prefix: str, error_prefix: str = "errors/", hour: datetime = HOUR) -> str:
    """The rendered pattern of the hour (unknown values as '*')."""
    layout = DeliveryLayout(parse_prefix(prefix), parse_prefix(error_prefix, "error_prefix"))
    (pattern,) = layout.hour_patterns(hour)
    return "".join("*" if segment.kind == "unknown" else segment.text for segment in pattern.segments)


def test_a_plain_prefix_keeps_the_default_layout() -> None:
    template = parse_prefix("events/")
    assert not template.written_with_expressions
    assert template.pieces == (
        Text("events/"),
        YEAR,
        Text("/"),
        MONTH,
        Text("/"),
        DAY,
        Text("/"),
        HOUR_FIELD,
        Text("/"),
    )
    assert folder("events/") == "events/2026/03/01/07/"
    assert folder("") == "2026/03/01/07/"


def test_a_plain_error_prefix_puts_the_error_output_type_first() -> None:
    template = parse_prefix("errors/", "error_prefix")
    assert template.pieces[:3] == (Text("errors/"), ErrorOutputType(), Text("/"))
    layout = DeliveryLayout(parse_prefix("events/"), template)
    rendered = ["".join(s.text for s in pattern.segments) for pattern in layout.error_patterns(HOUR)]
    assert rendered == ["errors/processing-failed/2026/03/01/07/", "errors/format-conversion-failed/2026/03/01/07/"]


@pytest.mark.parametrize(
    ("prefix", "rendered"),
    [
        pytest.param(
            "events/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/",
            "events/year=2026/month=03/day=01/hour=07/",
            id="hive-style",
        ),
        pytest.param("raw/!{timestamp:yyyy-MM-dd}/!{timestamp:HH}/", "raw/2026-03-01/07/", id="iso-date-then-hour"),
        pytest.param("raw/!{timestamp:yyyy/MM/dd/HH}/", "raw/2026/03/01/07/", id="one-expression"),
        pytest.param("raw/!{timestamp:uuuu/M/d/H}/", "raw/2026/3/1/7/", id="unpadded-fields"),
        pytest.param("raw/!{timestamp:yy}/!{timestamp:MM/dd/HH}/", "raw/26/03/01/07/", id="two-digit-year"),
        pytest.param("raw/dt=!{timestamp:yyyy'-'MM'-'dd}/h=!{timestamp:HH}/", "raw/dt=2026-03-01/h=07/", id="quoted"),
        pytest.param("raw/!{timestamp:yyyy''MM''dd''HH}/", "raw/2026'03'01'07/", id="quoted-quote"),
        pytest.param(
            "events/!{partitionKeyFromQuery:event_type}/!{timestamp:yyyy/MM/dd/HH}/",
            "events/*/2026/03/01/07/",
            id="partition-key-from-query",
        ),
        pytest.param(
            "events/!{timestamp:yyyy/MM/dd/HH}/tenant=!{partitionKeyFromLambda:tenant}/",
            "events/2026/03/01/07/tenant=*/",
            id="partition-key-from-lambda-after-the-hour",
        ),
        pytest.param(
            "events/!{timestamp:yyyy/MM/dd/HH}/!{firehose:random-string}/",
            "events/2026/03/01/07/*/",
            id="random-string",
        ),
    ],
)
def test_every_expression_form_renders_the_hour(prefix: str, rendered: str) -> None:
    assert parse_prefix(prefix).written_with_expressions
    assert folder(prefix) == rendered


def test_partition_keys_are_typed_by_their_source() -> None:
    template = parse_prefix("e/!{partitionKeyFromQuery:a}/!{partitionKeyFromLambda:b.c}/!{timestamp:yyyy/MM/dd/HH}/")
    assert template.partition_keys == (PartitionKey("query", "a"), PartitionKey("lambda", "b.c"))
    assert RandomString() in parse_prefix("!{firehose:random-string}/!{timestamp:yyyy/MM/dd/HH}/").pieces


@pytest.mark.parametrize(
    ("prefix", "kind", "reason"),
    [
        pytest.param("events/!{timestamp:yyyy/MM/dd}/", "prefix", "no hour field", id="no-hour-field"),
        pytest.param("events/!{timestamp:MM/dd/HH}/", "prefix", "no year field", id="no-year-field"),
        pytest.param("events/!{timestamp:yyyy/HH}/", "prefix", "no month or day field", id="no-month-no-day"),
        pytest.param("events/!{partitionKeyFromQuery:t}/", "prefix", "no hour field", id="partition-only"),
        pytest.param("events/!{time:yyyy/MM/dd/HH}/", "prefix", "unknown namespace 'time'", id="unknown-namespace"),
        pytest.param("events/!{timestamp:yyyy/MM/dd/HH/", "prefix", "unbalanced '!{'", id="unbalanced"),
        pytest.param("events/!{timestamp:yyyy!{timestamp:HH}}/", "prefix", "unbalanced '!{'", id="nested"),
        pytest.param("events/!{yyyy}/", "prefix", "has no namespace", id="no-namespace"),
        pytest.param("events/!{firehose:uuid}/", "prefix", "unknown firehose value 'uuid'", id="unknown-firehose"),
        pytest.param(
            "events/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/",
            "prefix",
            "only allowed in the error prefix",
            id="error-output-type-in-prefix",
        ),
        pytest.param(
            "e/!{timestamp:yyyy/MM/dd/HH}/!{partitionKeyFromQuery:t}/",
            "error_prefix",
            "partition keys are not allowed in the error prefix",
            id="partition-key-in-error-prefix",
        ),
        pytest.param(
            "errors/!{timestamp:yyyy/MM/dd/HH}/", "error_prefix", "no !{firehose:error-output-type}", id="no-type"
        ),
        pytest.param("events/!{timestamp:yyyy/MM/dd/HH/mm}/", "prefix", "minute field", id="minute-field"),
        pytest.param("events/!{timestamp:yyyy/MMM/dd/HH}/", "prefix", "writes the month as text", id="month-name"),
        pytest.param("events/!{timestamp:yyyy/MM/dd/hh}/", "prefix", "clock hour (1-12)", id="clock-hour"),
        pytest.param("events/!{timestamp:yyyy/MM/dd/HH'}/", "prefix", "unbalanced quote", id="unbalanced-quote"),
        pytest.param("events/!{timestamp:yyyy/MM/dd/HHQ}/", "prefix", "letter 'Q'", id="unknown-letter"),
        pytest.param("events/!{timestamp:}/", "prefix", "needs a pattern", id="empty-pattern"),
        pytest.param("events/!{partitionKeyFromQuery:}/!{timestamp:yyyy/MM/dd/HH}/", "prefix", "key name", id="no-key"),
        pytest.param("events/!{timestamp:yyyy/MM/dd/HH}", "prefix", "must end with '/'", id="no-trailing-slash"),
        pytest.param("ev ents/!{timestamp:yyyy/MM/dd/HH}/", "prefix", "outside", id="bad-character"),
    ],
)
def test_refusals_name_the_reason(prefix: str, kind: str, reason: str) -> None:
    with pytest.raises(PrefixError) as caught:
        parse_prefix(prefix, kind)  # type: ignore[arg-type]
    assert reason in str(caught.value)


def test_an_error_prefix_with_expressions_may_end_in_the_object_name() -> None:
    template = parse_prefix("errors/!{timestamp:yyyy/MM/dd/HH}/!{firehose:error-output-type}", "error_prefix")
    layout = DeliveryLayout(parse_prefix("events/"), template)
    assert layout.is_error_object("errors/2026/03/01/07/processing-failedstream-1-2026-03-01-07-x", HOUR)
    assert not layout.is_error_object("errors/2026/03/01/07/other-stream-1", HOUR)


def test_the_streams_file_refuses_a_bad_prefix_naming_stream_field_and_reason() -> None:
    with pytest.raises(ConfigError, match=r"stream 'orders', field 'prefix': .*no hour field"):
        make_stream(prefix="orders/!{timestamp:yyyy/MM/dd}/")
    with pytest.raises(ConfigError, match=r"field 'error_prefix': .*needs an error prefix"):
        make_stream(prefix="orders/!{partitionKeyFromQuery:t}/!{timestamp:yyyy/MM/dd/HH}/")
    with pytest.raises(ConfigError, match=r"field 'prefix_timezone': 'Mars/Olympus' is not a known time zone"):
        make_stream(prefix_timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match=r"field 'compression': must be one of"):
        make_stream(compression="LZ4")
    stream = make_stream(
        prefix="orders/!{partitionKeyFromQuery:t}/!{timestamp:yyyy/MM/dd/HH}/",
        error_prefix="errors/",
        prefix_timezone="America/New_York",
    )
    assert stream.prefix_timezone == "America/New_York" and stream.compression == "auto"
