"""Airflow connections → an S3 client and a warehouse DB-API connection with its dialect."""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from firehose_loader.config import Settings, Stream, default_of
from firehose_loader.errors import PermanentError

if TYPE_CHECKING:
    from firehose_loader.warehouse.protocol import Dialect

# How the S3 client retries throttling (503 SlowDown), 5xx and connection errors, unless the AWS
# connection's extra sets its own ``config_kwargs.retries``: botocore's "standard" mode backs off
# exponentially with full jitter (at most 20 s between attempts). What still fails after that
# fails the task, which Airflow retries (RETRY_DEFAULTS); permanent errors fail it at once.
S3_RETRIES = {"mode": "standard", "total_max_attempts": 5}


class WarehouseConnectionError(PermanentError):
    """The warehouse connection is of a type the loader does not support, misconfigured, or refuses the login."""


def s3_client(settings: Settings) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.config import Config

    hook = S3Hook(aws_conn_id=settings.aws_conn_id)
    if hook.config.retries is None:
        hook = S3Hook(aws_conn_id=settings.aws_conn_id, config=hook.config.merge(Config(retries=S3_RETRIES)))
    return hook.get_conn()


# libpq's TCP keepalives (unless the connection's extra sets them): a session whose network path
# died (a NAT or load balancer dropped it mid-COPY) fails in about a minute instead of hanging
# for the kernel's two hours. redshift_connector keeps its socket alive by default.
POSTGRES_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def warehouse_dialect(settings: Settings) -> Dialect:
    """The dialect of the warehouse connection, without connecting (the extract validates against its limits)."""
    return _connection_and_dialect(settings)[1]


def _connection_and_dialect(settings: Settings) -> tuple[Any, Dialect]:
    from airflow.sdk import BaseHook

    from firehose_loader.warehouse.dialect import dialect_for

    connection = BaseHook.get_connection(settings.warehouse_conn_id)
    try:
        return connection, dialect_for(connection.conn_type or "", connection.extra_dejson)
    except ValueError as exc:
        raise WarehouseConnectionError(str(exc)) from exc


def warehouse_connection(settings: Settings, stream: Stream | None = None) -> tuple[Any, Dialect]:
    """A DB-API connection from the warehouse connection's own provider hook, and its dialect.

    With ``stream``, the session has the stream's lock and statement timeouts (load.set_session_timeouts).
    """
    connection, dialect = _connection_and_dialect(settings)
    if connection.conn_type == "redshift" and "data_api" in connection.extra_dejson:
        return data_api_connection(settings, connection, dialect, stream), dialect
    try:
        if connection.conn_type == "redshift":
            conn = redshift_connection(settings.warehouse_conn_id)
        elif connection.conn_type == "postgres":
            conn = postgres_connection(settings.warehouse_conn_id, connection)
        else:
            conn = connection.get_hook().get_conn()
    except Exception as exc:
        if is_permanent_connect_error(exc):
            raise WarehouseConnectionError(
                f"cannot log in to the warehouse through connection {settings.warehouse_conn_id!r}: {exc}. "
                "Fix the connection's login, password or database; retrying will not help."
            ) from exc
        raise
    if stream is not None:
        from firehose_loader.load import set_session_timeouts

        try:
            set_session_timeouts(conn, stream, settings, dialect)
        except Exception:
            conn.close()
            raise
    return conn, dialect


def data_api_connection(settings: Settings, connection: Any, dialect: Dialect, stream: Stream | None) -> Any:
    """A DataApiConnection from the warehouse connection's extra ``data_api`` (docs/deploy.md#data-api-mode).

    The boto3 ``redshift-data`` client comes from the Amazon provider's RedshiftDataHook, so the
    Airflow AWS connection's credentials, role and region are used. With ``stream``, every batch
    opens with the stream's SET statement_timeout (no session outlives a call), the wait for a
    statement is bounded by it, and lists of rows are written under the stream's staging prefix.
    """
    from airflow.providers.amazon.aws.hooks.redshift_data import RedshiftDataHook

    from firehose_loader.load import data_api_rows_store, template_context
    from firehose_loader.warehouse.data_api import DataApiConfigError, DataApiConnection, DataApiTarget
    from firehose_loader.warehouse.redshift import Redshift
    from firehose_loader.warehouse.render import render_statements

    assert isinstance(dialect, Redshift), "the Data API is Redshift's"
    try:
        target = DataApiTarget.from_extra(connection.extra_dejson["data_api"])
    except DataApiConfigError as exc:
        raise WarehouseConnectionError(f"warehouse connection {settings.warehouse_conn_id!r}: {exc}") from exc
    client = RedshiftDataHook(aws_conn_id=target.aws_conn_id or settings.aws_conn_id).conn
    if stream is None:
        return DataApiConnection(
            client, target, iam_role=dialect.iam_role, timeout_seconds=default_of("statement_timeout_minutes") * 60
        )
    return DataApiConnection(
        client,
        target,
        iam_role=dialect.iam_role,
        timeout_seconds=stream.statement_timeout_minutes * 60,
        session_statements=render_statements(
            dialect.session_timeouts_template(), **template_context(stream, settings, dialect)
        ),
        store_rows=data_api_rows_store(s3_client(settings), stream),
        statement_name=f"firehose-loader {stream.name}",
    )


def postgres_connection(conn_id: str, connection: Any) -> Any:
    """A DB-API connection from the postgres provider's hook, with TCP keepalives unless the extra sets its own."""
    import attrs
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    extra = {**POSTGRES_KEEPALIVES, **connection.extra_dejson}
    with_keepalives = attrs.evolve(connection, extra=json.dumps(extra))
    return PostgresHook(postgres_conn_id=conn_id, connection=with_keepalives).get_conn()


# Server messages that no retry can fix: wrong credentials, a database or role that does not exist.
PERMANENT_CONNECT_ERRORS = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


def is_permanent_connect_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in PERMANENT_CONNECT_ERRORS)


class PyformatConnection:
    """A redshift_connector connection whose cursors take ``%(name)s`` parameters, as the templates write them.

    redshift_connector's default paramstyle is ``format`` (``%s``) and is module-wide; each
    cursor is switched instead, so nothing else in the process changes.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def cursor(self) -> Any:
        cursor = self._connection.cursor()
        cursor.paramstyle = "pyformat"
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def without_extra(connection: Any, keys: tuple[str, ...]) -> Any:
    """A copy of an Airflow connection without the given extra keys."""
    import attrs

    extra = {name: value for name, value in connection.extra_dejson.items() if name not in keys}
    return attrs.evolve(connection, extra=json.dumps(extra))


def redshift_connection(conn_id: str) -> PyformatConnection:
    """A DB-API connection from the Amazon provider's RedshiftSQLHook (password, IAM or serverless auth).

    The hook passes every key of the connection's extra to ``redshift_connector.connect()``,
    which refuses keys it does not know; the loader's own keys (``iam_role``) are removed first.
    """
    from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

    from firehose_loader.warehouse.redshift import REDSHIFT_EXTRA_KEYS

    class LoaderRedshiftSQLHook(RedshiftSQLHook):
        @cached_property
        def conn(self) -> Any:
            return without_extra(self.get_connection(self.get_conn_id()), REDSHIFT_EXTRA_KEYS)

    return PyformatConnection(LoaderRedshiftSQLHook(redshift_conn_id=conn_id).get_conn())
