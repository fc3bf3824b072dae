"""Amazon Redshift (production): COPY the Parquet stage from S3 with an IAM role; no secrets in SQL."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firehose_loader.config import MAX_VARCHAR, ColumnType
from firehose_loader.records.coercion import WarehouseLimits
from firehose_loader.warehouse.protocol import Stage
from firehose_loader.warehouse.render import render

# The role Redshift assumes to read the stage: an IAM role ARN (a comma-separated chain of up
# to 10 for cross-account access), or "default" for the cluster's default IAM role.
IAM_ROLE_ARN = r"arn:aws(?:-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/[A-Za-z0-9+=.@_/-]{1,512}"
IAM_ROLE = re.compile(rf"default|{IAM_ROLE_ARN}(?:,{IAM_ROLE_ARN}){{0,9}}")
# What a stage's bucket and key may contain to be put in COPY's source literal (stage keys are
# built from the config's prefixes, the stream name, the hour and the run id, all checked).
STAGE_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
STAGE_KEY = re.compile(r"[A-Za-z0-9!_.*()/-]{1,1024}")
# Redshift's varchar length counts bytes; a UTF-8 character takes at most 4.
UTF8_MAX_BYTES_PER_CHAR = 4
# What Redshift stores: a json value is staged as varchar(65535) text (then parsed into SUPER), a
# varchar holds at most 65535 bytes, and varchar comparison ignores trailing blanks.
REDSHIFT_LIMITS = WarehouseLimits(
    warehouse="Redshift", json_max_bytes=MAX_VARCHAR, varchar_max_bytes=MAX_VARCHAR, ignores_trailing_blanks=True
)
# The connection extra the Redshift dialect reads; airflow.connections hides it from the driver.
REDSHIFT_EXTRA_KEYS = ("iam_role",)


@dataclass(frozen=True)
class Redshift:
    """Amazon Redshift: COPY the Parquet stage from S3 with an IAM role; no secrets in SQL.

    Built from the Redshift connection's extra ``iam_role``: the ARN of the IAM role
    attached to the cluster (or namespace) that may read the staging prefix.
    """

    iam_role: str
    name: str = "redshift"
    stages_rows: bool = True
    limits: WarehouseLimits = REDSHIFT_LIMITS
    # Redshift compares varchar byte by byte (UTF-8 byte order is code point order); trailing blanks
    # aside, which validation keeps out of keys and order_by (REDSHIFT_LIMITS).
    text_collation: str = ""
    # Redshift compares varchar values byte by byte, and UTF-8 byte order is code point
    # order, which is how Python orders object keys; there is no COLLATE to add (and 1024
    # bytes is S3's own limit for a key).
    object_key_type: str = "varchar(1024)"
    # The current statement's start in UTC (SYSDATE would be the transaction's).
    clock: str = "GETDATE()"

    def __post_init__(self) -> None:
        if not isinstance(self.iam_role, str) or not IAM_ROLE.fullmatch(self.iam_role):
            raise ValueError(
                f"redshift warehouse connection: extra 'iam_role' must be an IAM role ARN such as "
                f"arn:aws:iam::123456789012:role/firehose-loader-copy (or 'default'), got {self.iam_role!r}"
            )

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> Redshift:
        if not extra.get("iam_role"):
            raise ValueError(
                "redshift warehouse connection: set extra 'iam_role' to the ARN of the IAM role Redshift "
                "assumes to COPY the stage from S3 (see docs/deploy.md)"
            )
        return cls(iam_role=extra["iam_role"])

    def column_type(self, column_type: ColumnType) -> str:
        if column_type.name == "json":
            return "super"
        if column_type.name == "text":
            return str(ColumnType("varchar", length=MAX_VARCHAR))
        if column_type.name == "varchar":
            assert column_type.length is not None
            length = min(UTF8_MAX_BYTES_PER_CHAR * column_type.length, MAX_VARCHAR)
            return str(ColumnType("varchar", length=length))
        return str(column_type)

    def staging_type(self, column_type: ColumnType) -> str:
        # COPY cannot parse a Parquet string into SUPER (it would load a SUPER string); the
        # JSON text is staged as varchar and parsed by the merge's INSERT (insert_expression).
        if column_type.name == "json":
            return str(ColumnType("varchar", length=MAX_VARCHAR))
        return self.column_type(column_type)

    def insert_expression(self, name: str, column_type: ColumnType) -> str:
        return render("redshift/insert_expression.sql", name=name, kind=column_type.name).strip()

    def table_options(self, key: tuple[str, ...], order_by: str) -> str:
        return " " + render("redshift/table_options.sql", key=list(key), order_by=order_by).strip()

    def extra_ddl_templates(self) -> tuple[str, ...]:
        return ()  # Redshift has no indexes: distribution and sort keys are table options

    def catalog_template(self) -> str:
        return "redshift/catalog_objects.sql"

    def session_timeouts_template(self) -> str:
        return "redshift/session_timeouts.sql"

    def lock_statement(self, context: dict[str, Any]) -> str:
        return render("redshift/lock_loader_tables.sql", **context).strip()

    def add_column_statement(self, target: tuple[str, str], name: str, column_type: str) -> str:
        return render("add_column.sql", target=target, name=name, type=column_type).strip()

    def alter_column_statement(self, target: tuple[str, str], name: str, found: str, declared: str) -> str:
        # Redshift changes a type in place only to lengthen a varchar.
        widen = found.startswith("varchar(") and declared.startswith("varchar(")
        return render("redshift/alter_column_type.sql", target=target, name=name, type=declared, widen=widen).strip()

    def copy_into_staging(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None:
        """COPY the stage's files from S3 into the staging table, by a manifest that lists exactly them
        (with ``keys_only``, the manifest of the stage's key files: the plan's columns alone)."""
        assert stage.copy_manifest is not None, "load.staged_batch gives every stage its COPY manifest"
        if context.get("keys_only"):
            assert stage.key_manifest is not None, "keys_only is chosen for a stage with key files"
            manifest_key = stage.key_manifest()
            assert manifest_key is not None, "keys_only is chosen for a stage with key files"
        else:
            manifest_key = stage.copy_manifest()
        if not STAGE_BUCKET.fullmatch(stage.bucket) or not STAGE_KEY.fullmatch(manifest_key):
            raise ValueError(
                f"cannot COPY s3://{stage.bucket}/{manifest_key}: a stage key for Redshift may only contain "
                "letters, digits and !_.*()/- (check the stream's staging_prefix)"
            )
        cursor.execute(
            render(
                "redshift/copy_staging.sql",
                **context,
                manifest_uri=f"s3://{stage.bucket}/{manifest_key}",
                iam_role=self.iam_role,
            ).strip()
        )

    def insert_winners(self, cursor: Any, context: dict[str, Any], stage: Stage) -> None:
        """Nothing more to do: merge.sql inserted the winners from the staging table."""
