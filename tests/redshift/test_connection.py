"""How a task gets its Redshift connection: the Amazon provider's RedshiftSQLHook, redshift_connector, pyformat.

These tests stand in for Amazon Redshift, which cannot run here: ``redshift_connector.connect``
is replaced by a recorder, so what the provider's hook would open a session with is checked
without a cluster.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redshift_connector

from firehose_loader.airflow.connections import PyformatConnection, warehouse_connection
from firehose_loader.airflow.tasks import run_ensure_tables
from firehose_loader.config import Settings
from firehose_loader.warehouse.redshift import Redshift
from tests.redshift.redshift_setup import COPY_ROLE
from tests.unit.stream_factory import make_stream

pytestmark = pytest.mark.redshift

CONNECTION = {
    "conn_type": "redshift",
    "host": "analytics.abc123xyz789.eu-west-1.redshift.amazonaws.com",
    "port": 5439,
    "schema": "analytics",
    "login": "firehose_loader",
    "password": "not-a-real-password",
    "extra": {"iam_role": COPY_ROLE, "sslmode": "verify-full", "timeout": 30},
}


class FakeDriverConnection:
    def __init__(self) -> None:
        self.closed = False

    def cursor(self) -> Any:
        return redshift_connector.Cursor.__new__(redshift_connector.Cursor)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record the keyword arguments the provider's hook passes to redshift_connector.connect()."""
    received: dict[str, Any] = {}

    def fake_connect(**kwargs: Any) -> FakeDriverConnection:
        received.update(kwargs)
        received["connection"] = FakeDriverConnection()
        return received["connection"]

    monkeypatch.setattr(redshift_connector, "connect", fake_connect)
    return received


def use_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, definition: dict[str, Any]) -> Settings:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(definition))
    return Settings(warehouse_conn_id=conn_id)


def test_redshift_connection_gives_the_redshift_dialect_and_a_hook_connection(
    monkeypatch: pytest.MonkeyPatch, connect: dict[str, Any]
) -> None:
    """Stands in for Redshift: the dialect comes from the extra; the driver gets the connection without it."""
    conn, dialect = warehouse_connection(use_connection(monkeypatch, "rs_warehouse", CONNECTION))
    assert dialect == Redshift(iam_role=COPY_ROLE)
    assert {key: connect[key] for key in ("host", "port", "database", "user", "password")} == {
        "host": CONNECTION["host"],
        "port": 5439,
        "database": "analytics",
        "user": "firehose_loader",
        "password": "not-a-real-password",
    }
    assert connect["sslmode"] == "verify-full" and connect["timeout"] == 30
    assert "iam_role" not in connect  # redshift_connector.connect() refuses keys it does not know
    assert isinstance(conn, PyformatConnection)
    conn.close()
    assert connect["connection"].closed


def test_cursors_take_pyformat_parameters(monkeypatch: pytest.MonkeyPatch, connect: dict[str, Any]) -> None:
    """Stands in for Redshift: the templates' %(name)s parameters need pyformat cursors, set per cursor."""
    conn, _ = warehouse_connection(use_connection(monkeypatch, "rs_warehouse", CONNECTION))
    assert conn.cursor().paramstyle == "pyformat"
    assert redshift_connector.paramstyle == "format"  # the module-wide default is left alone


def test_a_redshift_connection_without_iam_role_is_refused(
    monkeypatch: pytest.MonkeyPatch, connect: dict[str, Any]
) -> None:
    """Stands in for Redshift: without a role the COPY could not authenticate; say what to set, without retrying."""
    from airflow.sdk.exceptions import AirflowFailException

    definition = {**CONNECTION, "extra": {"sslmode": "verify-full"}}
    with pytest.raises(AirflowFailException, match="set extra 'iam_role'"):
        run_ensure_tables(make_stream(), use_connection(monkeypatch, "rs_no_role", definition))
    assert connect == {}  # refused before connecting


def test_iam_authentication_extras_still_reach_the_hook(
    monkeypatch: pytest.MonkeyPatch, connect: dict[str, Any]
) -> None:
    """Stands in for Redshift: extras for the hook and the driver (iam, cluster_identifier) are kept."""

    def fake_token(self: Any, conn: Any) -> tuple[str, str, int]:
        assert "iam_role" not in conn.extra_dejson
        return "IAM:firehose_loader", "temporary-token", 5439

    from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

    monkeypatch.setattr(RedshiftSQLHook, "get_iam_token", fake_token)
    definition = {
        **CONNECTION,
        "password": None,
        "extra": {"iam_role": COPY_ROLE, "iam": True, "cluster_identifier": "analytics"},
    }
    warehouse_connection(use_connection(monkeypatch, "rs_iam", definition))
    assert connect["user"] == "IAM:firehose_loader" and connect["iam"] is True
    assert connect["cluster_identifier"] == "analytics" and "iam_role" not in connect


DATA_API_CONNECTION = {
    "conn_type": "redshift",
    "extra": {
        "iam_role": COPY_ROLE,
        "data_api": {
            "cluster_identifier": "analytics",
            "database": "analytics",
            "db_user": "firehose_loader",
            "aws_conn_id": "aws_data_api",
        },
    },
}


def test_a_data_api_extra_gives_a_data_api_connection_through_the_providers_hook(
    monkeypatch: pytest.MonkeyPatch, connect: dict[str, Any]
) -> None:
    """Stands in for Redshift: no session is opened; the Data API client comes from RedshiftDataHook with the
    AWS connection the extra names, and every batch opens with the stream's statement timeout."""
    from firehose_loader.warehouse.data_api import DataApiConnection, DataApiTarget

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DATA_API",
        json.dumps({"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}),
    )
    stream = make_stream(statement_timeout_minutes=20)
    conn, dialect = warehouse_connection(use_connection(monkeypatch, "rs_data_api", DATA_API_CONNECTION), stream)
    assert dialect == Redshift(iam_role=COPY_ROLE)
    assert isinstance(conn, DataApiConnection) and connect == {}  # redshift_connector never called
    assert conn.client.meta.service_model.service_name == "redshift-data"
    assert conn.client.meta.region_name == "eu-west-1"
    assert conn.target == DataApiTarget(
        cluster_identifier="analytics", database="analytics", db_user="firehose_loader", aws_conn_id="aws_data_api"
    )
    assert conn.session_statements == ["SET statement_timeout TO 1200000"]
    assert conn.timeout_seconds == 20 * 60 and conn.iam_role == COPY_ROLE and conn.store_rows is not None


def test_a_wrong_data_api_extra_is_refused_naming_the_connection(
    monkeypatch: pytest.MonkeyPatch, connect: dict[str, Any]
) -> None:
    """Stands in for Redshift: a missing field fails the task at once, with what to set."""
    from airflow.sdk.exceptions import AirflowFailException

    definition = {**DATA_API_CONNECTION, "extra": {"iam_role": COPY_ROLE, "data_api": {"database": "analytics"}}}
    with pytest.raises(AirflowFailException, match=r"'rs_bad_data_api'.*exactly one of 'cluster_identifier'"):
        run_ensure_tables(make_stream(), use_connection(monkeypatch, "rs_bad_data_api", definition))
    assert connect == {}
