"""No credential in rendered SQL, task logs, XCom or rendered task fields.

The DAG runs with distinctive secret values in both connections (moto accepts any AWS keys;
the local PostgreSQL trusts local connections and never asks for the password, so the runs
succeed while carrying them). Everything the runs leave behind is then searched for them:

- every SQL statement sent to the warehouse, with its parameters (recorded at the driver),
  and every template the loader rendered;
- the task logs: what the in-process DAG runs printed or logged, and the log files under
  $AIRFLOW_HOME/logs;
- the XCom values and the rendered task fields the runs stored in Airflow's metadata database.

The static side (no credential in DAG code or templates; COPY authenticates with an IAM role)
is tests/unit/test_secrets.py and tests/redshift/test_statement_sequence.py.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from firehose_loader.warehouse import render as loader_sql
from tests.integration.conftest import run_dag
from tests.integration.support import SIMPLE, object_key

HOUR = datetime(2026, 5, 7, 3, tzinfo=UTC)
SECRETS = {
    "aws_access_key_id": "AKIAFHLOADERSECRET42",
    "aws_secret_access_key": "fhl/Secret+Access+Key/9f8e7d6c5b4a39281706",
    "aws_session_token": "FHLoaderSessionTokenSecret0123456789abcdef",
    "warehouse_password": "fhl-warehouse-password-Secret-7319",
}


def secret_connections() -> dict[str, str]:
    aws = json.loads(os.environ["AIRFLOW_CONN_FIREHOSE_S3"])
    aws["login"] = SECRETS["aws_access_key_id"]
    aws["password"] = SECRETS["aws_secret_access_key"]
    aws["extra"] = {**aws.get("extra", {}), "aws_session_token": SECRETS["aws_session_token"]}
    warehouse = json.loads(os.environ["AIRFLOW_CONN_WAREHOUSE"])
    warehouse["password"] = SECRETS["warehouse_password"]
    return {"AIRFLOW_CONN_FIREHOSE_S3": json.dumps(aws), "AIRFLOW_CONN_WAREHOUSE": json.dumps(warehouse)}


class Recorder:
    """Every statement (and its parameters) the warehouse driver executes, and every rendered template."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        self.rendered: list[str] = []
        for name in ("execute", "executemany", "copy"):
            monkeypatch.setattr(psycopg.Cursor, name, self._recording(getattr(psycopg.Cursor, name)))
        get_template = loader_sql.ENVIRONMENT.get_template
        recorder = self

        class RecordingTemplate:
            def __init__(self, template: Any) -> None:
                self.template = template

            def render(self, *args: Any, **kwargs: Any) -> str:
                text = self.template.render(*args, **kwargs)
                recorder.rendered.append(text)
                return text

        monkeypatch.setattr(loader_sql.ENVIRONMENT, "get_template", lambda name: RecordingTemplate(get_template(name)))

    def _recording(self, method: Any) -> Any:
        statements = self.statements

        def wrapper(cursor: Any, query: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
            text = query.as_string(cursor) if hasattr(query, "as_string") else str(query)
            statements.append(f"{text} -- {params!r}")
            return method(cursor, query, params, *args, **kwargs)

        return wrapper


def metadata_rows(dag_runs: list[Any]) -> list[str]:
    """The XCom values and rendered task fields of the runs, as stored in Airflow's metadata database."""
    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://")
    rows: list[str] = []
    with psycopg.connect(url) as conn:
        for run in dag_runs:
            xcom = conn.execute(
                "SELECT task_id, key, value::text FROM xcom WHERE dag_id = %s AND run_id = %s", (run.dag_id, run.run_id)
            ).fetchall()
            fields = conn.execute(
                "SELECT task_id, rendered_fields::text FROM rendered_task_instance_fields"
                " WHERE dag_id = %s AND run_id = %s",
                (run.dag_id, run.run_id),
            ).fetchall()
            rows += [repr(row) for row in xcom + fields]
    return rows


def log_files() -> dict[Path, str]:
    root = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return {path: path.read_text(errors="replace") for path in root.rglob("*") if path.is_file()}


def test_no_secret_in_sql_logs_xcom_or_rendered_fields(streams, s3, warehouse, monkeypatch, capfd, caplog):
    entry = streams.declare(s3, "rel_secrets", **SIMPLE)
    body = b"\n".join(orjson.dumps({"id": f"s{n}", "seq": 1, "note": "x"}) for n in range(20))
    s3.put_object(Bucket=entry["bucket"], Key=object_key(HOUR, "00-a"), Body=body + b"\n{broken")
    recorder = Recorder(monkeypatch)

    env = secret_connections()
    runs = [
        run_dag(f"ingest_{entry['name']}", HOUR + timedelta(hours=1), env=env),
        run_dag(f"audit_{entry['name']}", HOUR + timedelta(hours=1), env=env, conf={"lookback_hours": 1}),
    ]
    assert [run.state for run in runs] == ["success", "success"]
    captured = capfd.readouterr()

    places = {
        "SQL statements sent to the warehouse": recorder.statements,
        "rendered SQL templates": recorder.rendered,
        "task output (stdout)": [captured.out],
        "task output (stderr)": [captured.err],
        "captured log records": [caplog.text],
        "XCom and rendered task fields": metadata_rows(runs),
        **{f"log file {path}": [text] for path, text in log_files().items()},
    }
    # Each place really holds what the runs did, so finding nothing means something.
    assert any("MERGE" in text.upper() or "INSERT INTO" in text for text in recorder.statements)
    assert any("LOCK TABLE" in text for text in recorder.rendered)
    assert f"loaded {entry['name']} hour" in captured.out + caplog.text
    assert any("extract_hour" in row and "stage_key" in row for row in places["XCom and rendered task fields"])
    assert any("audit_and_repair" in row for row in places["XCom and rendered task fields"])
    for place, texts in places.items():
        for name, secret in SECRETS.items():
            assert not any(secret in text for text in texts), f"{name} found in {place}"
