"""How erase_keys reads the keys it is given (each as its key columns' values, bound as text)."""

from __future__ import annotations

import pytest

from firehose_loader.config import Settings
from firehose_loader.load import erase_keys, key_parameters
from firehose_loader.warehouse.postgres import Postgres
from tests.unit.stream_factory import make_stream

COMPOSITE = make_stream()  # key: order_id, line_no
SINGLE = make_stream(key=["sku"])


def test_a_key_is_a_mapping_by_column_a_list_in_key_order_or_a_lone_value() -> None:
    expected = {"key_0": "7", "key_1": "1"}
    assert key_parameters(COMPOSITE, {"line_no": 1, "order_id": 7}) == expected
    assert key_parameters(COMPOSITE, [7, 1]) == expected
    assert key_parameters(SINGLE, "A-1") == key_parameters(SINGLE, ["A-1"]) == {"key_0": "A-1"}
    assert key_parameters(make_stream(key=["gift"]), True) == {"key_0": "true"}


@pytest.mark.parametrize(
    "key",
    [[7], [7, 1, 2], {"order_id": 7}, {"order_id": 7, "line_no": 1, "qty": 2}, [7, None], [7, [1]], 7],
)
def test_a_key_of_the_wrong_shape_is_refused(key: object) -> None:
    with pytest.raises(ValueError, match="key"):
        key_parameters(COMPOSITE, key)  # type: ignore[arg-type]


class NoConnection:
    def cursor(self) -> None:
        raise AssertionError("nothing to erase reaches the warehouse")


def test_no_keys_or_no_reason_send_nothing() -> None:
    assert erase_keys(NoConnection(), SINGLE, Settings(), Postgres(), [], "gdpr", "manual") == 0
    with pytest.raises(ValueError, match="reason"):
        erase_keys(NoConnection(), SINGLE, Settings(), Postgres(), ["A-1"], " ", "manual")
    with pytest.raises(ValueError, match="key"):
        erase_keys(NoConnection(), COMPOSITE, Settings(), Postgres(), [[7]], "gdpr", "manual")
