"""Headless Chromium against a real Airflow 3 api-server with the project's DAGs and the dashboard plugin.

The session starts what it needs and stops all of it:

* the local stack (S3 API + PostgreSQL), as every integration test does;
* an Airflow of its own: ``AIRFLOW_HOME`` in ``.local/browser/airflow``, a fresh metadata database
  ``airflow_browser`` (so nothing of `make up` or of other tests shows up), the simple auth
  manager's user ``admin`` / ``admin``, and two streams in a streams file of its own;
* ``airflow api-server`` (one worker) on a free port and ``airflow dag-processor``;
* a demo-like run through the library functions the DAG tasks call (``extract_hour``,
  ``load_and_merge``, ``audit_hours``; `make demo` and the integration tests cover the same through
  ``airflow dags test``): two hours of Firehose objects for one stream loaded, one hour damaged by
  the lossy real-time path, one audit of both hours;
* Debian's Chromium (``/usr/bin/chromium``) driven by Playwright (``executable_path``: Playwright
  never downloads a browser here).

Screenshots go to ``.local/screenshots/``. The browser, the api-server and the dag-processor are
stopped at the end, and the session fails if any of their processes survives.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import yaml

from firehose_loader.audit import audit_hours
from firehose_loader.config import Settings, Stream, load_config
from firehose_loader.extract import extract_hour
from firehose_loader.layout import HOUR, StageWriter, hour_start
from firehose_loader.load import ensure_tables, load_and_merge, staged_batch
from firehose_loader.warehouse.postgres import Postgres
from tools import airflow_local, stack
from tools.simulate import (
    PRODUCT_EVENT_COLUMNS,
    SimulatedObject,
    lossy_realtime_path,
    make_object,
    product_hour,
    realtime_write,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
HOME = ROOT / ".local" / "browser"
SCREENSHOTS = ROOT / ".local" / "screenshots"
DATABASE = "airflow_browser"
RECORDS_PER_HOUR = 300
DAMAGE = {"drops": 7, "duplicates": 4, "stale": 3}  # after the load (the audit's)
BEFORE_LOAD = {"drops": 9, "duplicates": 2, "older": 3, "older_in_place": 1}  # before it (realtime_quality's)
EXAMPLE_COLUMNS = PRODUCT_EVENT_COLUMNS


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.integration)


@dataclass
class Site:
    base_url: str
    password: str
    env: dict[str, str]
    settings: Settings
    streams: list[Stream]
    loaded: Stream  # the stream with two loaded and audited hours
    idle: Stream  # a stream that never ran
    hours: list[datetime]
    damaged: datetime
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)  # everything the session started

    def token(self) -> str:
        return airflow_local.api_token(self.base_url, self.password)


def stream_entry(name: str, token: str) -> dict[str, Any]:
    return {
        "name": f"{name}_{token}",
        "bucket": f"t-{name}-{token}",
        "prefix": "events/",
        "table": f"t_{token}_{name}.events",
        "key": ["event_id"],
        "order_by": "received_at",
        "columns": EXAMPLE_COLUMNS,
        "settle_grace_minutes": 0,
        "tags": ["browser-test"],
        "realtime_writer": name == "web",
    }


def recreate_database(name: str) -> None:
    with psycopg.connect(stack.pg_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def write_hours(stream: Stream, hours: list[datetime]) -> dict[datetime, list[SimulatedObject]]:
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    s3.create_bucket(Bucket=stream.bucket)
    rng = random.Random(2026)
    written = {}
    for hour in hours:
        objects = product_hour(stream.prefix, stream.name, hour, RECORDS_PER_HOUR, rng)
        objects.append(
            make_object(
                stream.prefix, stream.name, hour, 58, [b'{"event_id": "evt-broken", "received_at": '], "ndjson", rng
            )
        )
        for item in objects:
            s3.put_object(Bucket=stream.bucket, Key=item.key, Body=item.body)
        written[hour] = objects
    return written


def demo_run(
    stream: Stream, settings: Settings, written: dict[datetime, list[SimulatedObject]], damaged: datetime
) -> None:
    """The real-time path writes the hours first; load them as the ingest DAG's tasks do, let the real-time
    path damage one after its load, audit them as the audit DAG does."""
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    hours = list(written)
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        ensure_tables(conn, stream, settings, Postgres())
        for hour, objects in written.items():
            realtime_write(conn, stream, settings, objects, seed=hour.hour, **BEFORE_LOAD)
        for hour in hours:
            run_id = f"manual__{hour + HOUR:%Y-%m-%dT%H:%M:%S}+00:00"
            manifest = extract_hour(client, stream, hour, StageWriter("ingest", run_id, "extract_hour", 1))
            load_and_merge(conn, stream, settings, Postgres(), manifest, staged_batch(client, stream, manifest), run_id)
        lossy_realtime_path(conn, stream, settings, damaged, **DAMAGE)
        audit_hours(
            conn,
            client,
            stream,
            settings,
            Postgres(),
            hours,
            f"manual__{hours[-1] + HOUR:%Y-%m-%dT%H:%M:%S}+00:00",
            try_number=1,
        )


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="session")
def site(stack_up, chromium) -> Iterator[Site]:
    token = uuid.uuid4().hex[:8]
    shutil.rmtree(HOME, ignore_errors=True)
    logs = HOME / "logs"
    logs.mkdir(parents=True)
    streams_file = HOME / "streams.yml"
    streams_file.write_text(
        yaml.safe_dump({"streams": [stream_entry("web", token), stream_entry("idle", token)]}, sort_keys=False)
    )
    config = load_config(streams_file)
    loaded, idle = config.streams
    airflow_home = HOME / "airflow"
    password = airflow_local.ensure_password(airflow_home)
    port = airflow_local.free_port()
    current = hour_start(datetime.now(UTC))
    env = airflow_local.airflow_environment(
        airflow_home,
        port,
        DATABASE,
        STREAMS_CONFIG=str(streams_file),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
    )
    site = Site(
        base_url=f"http://localhost:{port}",
        password=password,
        env=env,
        settings=config.settings,
        streams=list(config.streams),
        loaded=loaded,
        idle=idle,
        hours=[current - 3 * HOUR, current - 2 * HOUR],
        damaged=current - 2 * HOUR,
        logs=logs,
    )
    try:
        recreate_database(DATABASE)
        airflow = str(airflow_local.VENV_BIN / "airflow")
        migrate = airflow_local.start([airflow, "db", "migrate"], env, logs / "db-migrate.log")
        site.processes["db-migrate"] = migrate
        # The demo-like run needs no Airflow: it goes on while the metadata database is migrated.
        demo_run(loaded, config.settings, write_hours(loaded, site.hours), site.damaged)
        assert migrate.wait(timeout=300) == 0, f"airflow db migrate failed; see {logs / 'db-migrate.log'}"
        site.processes["api-server"] = airflow_local.start([airflow, "api-server"], env, logs / "api-server.log")
        site.processes["dag-processor"] = airflow_local.start(
            [airflow, "dag-processor"], env, logs / "dag-processor.log"
        )
        airflow_local.wait_until(
            lambda: airflow_local.http_status(f"{site.base_url}/api/v2/version") == 200,
            "the api-server",
            180,
            site.processes["api-server"],
            logs / "api-server.log",
        )
        wanted = {dag for stream in site.streams for dag in (stream.ingest_dag_id, stream.audit_dag_id)}

        def parsed() -> bool:
            found = airflow_local.api_call(site.base_url, site.token(), "GET", "/api/v2/dags?limit=100")
            return wanted <= {dag["dag_id"] for dag in found["dags"]}

        airflow_local.wait_until(parsed, "the DAGs in the api-server", 180, site.processes["dag-processor"])
        yield site
    finally:
        survivors = []
        for name, process in site.processes.items():
            tree = airflow_local.process_tree(process.pid)
            airflow_local.stop_tree(process.pid, grace=20)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            survivors += [f"{name}: {pid}" for pid in tree if airflow_local.alive(pid)]
        assert not survivors, f"processes still running after the browser tests: {survivors}"


@pytest.fixture(scope="session")
def browser(chromium) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
    leftovers = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leftovers = [
            pid
            for pid in airflow_local.process_tree(os.getpid())
            if pid != os.getpid() and "chrom" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        ]
        if not leftovers:
            break
        time.sleep(0.2)
    assert not leftovers, f"Chromium processes still running: {leftovers}"


@pytest.fixture(scope="session")
def logged_in(site, browser) -> Iterator[Any]:
    """A browser context that logged in through the UI's login form, as a person does."""
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    page = context.new_page()
    page.goto(f"{site.base_url}/")
    page.wait_for_url("**/auth/login**")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", site.password)
    page.screenshot(path=str(SCREENSHOTS / "login.png"))
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.base_url}/")
    page.close()
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(logged_in) -> Iterator[Any]:
    page = logged_in.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        page.close()


def audit_results(stream: Stream) -> dict[datetime, dict[str, Any]]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        cursor = conn.execute(
            "SELECT * FROM firehose_loader.audit_results WHERE stream = %s ORDER BY hour", (stream.name,)
        )
        names = [column.name for column in cursor.description]
        return {row[1].replace(tzinfo=UTC): dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def ledger(stream: Stream, hour: datetime) -> list[dict[str, Any]]:
    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        cursor = conn.execute(
            "SELECT * FROM firehose_loader.ledger WHERE stream = %s AND hour = %s ORDER BY object_key",
            (stream.name, hour.replace(tzinfo=None)),
        )
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def provenance_rows(stream: Stream, hour: datetime) -> int:
    from psycopg import sql

    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        query = sql.SQL('SELECT COUNT(*) FROM {} WHERE "_firehose_object" LIKE %s').format(
            sql.Identifier(stream.schema, stream.table)
        )
        return conn.execute(query, (f"{stream.prefix}{hour:%Y/%m/%d/%H}/%",)).fetchone()[0]


def hour_text(hour: datetime) -> str:
    return f"{hour:%Y-%m-%dT%H:00}"
