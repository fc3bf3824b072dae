"""No credential in the DAG code, the library or the SQL templates; COPY names an IAM role, never keys.

The dynamic side (rendered SQL, task logs, XCom of real runs with secret-bearing connections) is
tests/integration/test_secrets.py; the statements sent to Redshift are checked by
tests/redshift/test_statement_sequence.py::test_no_secret_in_any_statement_or_parameter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from firehose_loader.config import PROJECT_ROOT
from firehose_loader.load import STAGING_TABLE
from firehose_loader.warehouse.redshift import Redshift
from firehose_loader.warehouse.render import SQL_DIR, render

SOURCES = sorted(
    path
    for folder in ("dags", "plugins", "include")
    for path in (PROJECT_ROOT / folder).rglob("*")
    if path.is_file() and path.suffix in {".py", ".sql", ".yml", ".yaml", ".json", ".cfg", ".ini", ".env", ".md"}
)
CREDENTIAL = re.compile(
    r"(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[A-Z0-9]{16}"  # an AWS access key id
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|(?i:(?:secret|password|passwd|token|access_key)[a-z_]*[\"']?\s*[:=]\s*[\"'][^\"'{}\s]{6,}[\"'])"  # a literal
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(PROJECT_ROOT)))
def test_no_credential_in_code_config_or_templates(path: Path) -> None:
    text = path.read_text(errors="replace")
    found = [match.group(0) for match in CREDENTIAL.finditer(text)]
    assert found == [], f"{path}: {found}"


def test_no_template_can_carry_keys() -> None:
    keys = re.compile(r"\b(CREDENTIALS|ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|MASTER_SYMMETRIC_KEY)\b", re.I)
    for template in SQL_DIR.rglob("*.sql"):
        assert not keys.search(template.read_text()), template


def test_redshift_copy_authenticates_with_the_role_only() -> None:
    role = "arn:aws:iam::123456789012:role/firehose-loader-copy"
    statement = render(
        "redshift/copy_staging.sql",
        staging=STAGING_TABLE,
        manifest_uri="s3://firehose-orders/firehose-loader/staging/orders/2026/03/01/10/run.parquet.manifest",
        iam_role=Redshift(iam_role=role).iam_role,
    )
    assert f"IAM_ROLE '{role}'" in statement
    assert not re.search(r"ACCESS_KEY|SECRET|TOKEN|CREDENTIALS", statement, re.I)
