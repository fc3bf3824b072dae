"""One bad stream stays alone: a streams file with a valid and a broken stream, against the local stack.

The valid stream's ingest DAG loads a whole hour; the broken one is an import error naming the stream
and the field; the dashboard answers 200 with the valid stream and the refused one's error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import ROOT, SESSION_TOKEN, run_hour
from tests.integration.support import ndjson, object_key

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 6, 1, 10, tzinfo=UTC)
GOOD = f"alone_good_{SESSION_TOKEN}"
BROKEN = f"alone_broken_{SESSION_TOKEN}"


def entry(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "bucket": f"t-{name.replace('_', '-')}",
        "prefix": "events/",
        "table": f"t_{SESSION_TOKEN}_{name}.events",
        "settle_grace_minutes": 0,
        "key": ["id"],
        "order_by": "seq",
        "columns": {"id": "varchar(16)", "seq": "integer", "note": "text"},
        **fields,
    }


@pytest.fixture
def one_bad_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3, stack_up) -> dict[str, Any]:
    good = entry(GOOD)
    broken = entry(BROKEN, order_by="nope")
    s3.create_bucket(Bucket=good["bucket"])
    path = tmp_path / "streams.yml"
    path.write_text(yaml.safe_dump({"streams": [broken, good]}, sort_keys=False))
    monkeypatch.setenv("STREAMS_CONFIG", str(path))
    return good


def test_the_valid_stream_keeps_its_dags_and_loads_a_whole_hour(one_bad_stream, s3, warehouse):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert sorted(bag.dag_ids) == sorted([f"ingest_{GOOD}", f"audit_{GOOD}"])
    assert [Path(path).name for path in bag.import_errors] == ["streams_config.py"]
    (error,) = bag.import_errors.values()
    assert f"stream '{BROKEN}', field 'order_by'" in error

    records = [{"id": f"k{n:02d}", "seq": n % 3, "note": f"record {n}"} for n in range(30)]
    s3.put_object(Bucket=one_bad_stream["bucket"], Key=object_key(HOUR, "00-a"), Body=ndjson(records + records[:5]))
    run = run_hour(GOOD, HOUR, refused_streams=True)
    assert run.state == "success"
    rows = warehouse.execute(f"SELECT id, seq FROM {one_bad_stream['table']} ORDER BY id").fetchall()
    assert rows == [(record["id"], record["seq"]) for record in records]


def test_the_dashboard_lists_the_valid_stream_and_the_refused_one(one_bad_stream, monkeypatch):
    import firehose_dashboard
    from fastapi.testclient import TestClient

    monkeypatch.setattr(firehose_dashboard, "may_read_dag", lambda user, dag_id: True)
    overrides = {
        firehose_dashboard.authenticated_user: lambda: "tester",
        firehose_dashboard.page_user: lambda: "tester",
    }
    monkeypatch.setattr(firehose_dashboard.app, "dependency_overrides", overrides)
    client = TestClient(firehose_dashboard.app)

    page = client.get("/")
    assert page.status_code == 200, page.text
    assert f'data-stream="{GOOD}"' in page.text
    assert f'data-refused="{BROKEN}"' in page.text
    assert f"stream &#39;{BROKEN}&#39;, field &#39;order_by&#39;" in page.text

    api = client.get("/api/streams")
    assert api.status_code == 200, api.text
    body = api.json()
    assert [item["stream"] for item in body["streams"]] == [GOOD]
    assert [(item["stream"], item["field"]) for item in body["refused"]] == [(BROKEN, "order_by")]

    refused = client.get(f"/api/streams/{BROKEN}/hours")
    assert refused.status_code == 404
    assert "refused by the streams file" in refused.text


def test_an_error_of_the_whole_file_still_answers_500(tmp_path, monkeypatch):
    import firehose_dashboard
    from fastapi.testclient import TestClient

    path = tmp_path / "streams.yml"
    path.write_text("streams: [\n")
    monkeypatch.setenv("STREAMS_CONFIG", str(path))
    monkeypatch.setattr(
        firehose_dashboard.app, "dependency_overrides", {firehose_dashboard.page_user: lambda: "tester"}
    )
    page = TestClient(firehose_dashboard.app).get("/")
    assert page.status_code == 500
    assert "not valid YAML" in page.text
