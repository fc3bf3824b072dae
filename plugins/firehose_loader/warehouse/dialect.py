"""What differs between warehouses, and nothing else: the Dialect protocol, and the dialect of a connection.


The merge, ledger and DDL templates are shared; a dialect supplies column
types, table options, the lock statement and how the staged object gets into
the staging table. The dialect follows the warehouse connection's type, so the
same DAGs run against PostgreSQL locally and Redshift in production.

Each column of the shared templates carries three dialect-made pieces: ``type``
(the target's column type), ``staging_type`` (the session-local staging table's)
and ``insert_expression`` (how the merge's INSERT ... SELECT reads it from the
staging table, alias ``s``). They differ only where the stage cannot be loaded
into the target type directly: Redshift stages a json column as its text and
parses it into SUPER with JSON_PARSE.

Where the winning rows come from differs too (``stages_rows``). Redshift COPYs the
whole stage into the staging table and the merge inserts from it. PostgreSQL stages
only what the merge plan reads (key, order_by, provenance) and COPYs the winners
straight into the target once the plan is made: every row is written once, not into
a staging table first and then again into the target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from firehose_loader.warehouse.postgres import Postgres
from firehose_loader.warehouse.protocol import Dialect
from firehose_loader.warehouse.redshift import Redshift

DIALECTS: dict[str, Callable[[Mapping[str, Any]], Dialect]] = {
    "postgres": lambda extra: Postgres(),
    "redshift": Redshift.from_extra,
}


def dialect_for(conn_type: str, extra: Mapping[str, Any] | None = None) -> Dialect:
    """The dialect of a warehouse connection, configured from the connection's extra."""
    try:
        factory = DIALECTS[conn_type]
    except KeyError:
        raise ValueError(
            f"warehouse connection type {conn_type!r} is not supported (supported: {sorted(DIALECTS)})"
        ) from None
    return factory(extra or {})
