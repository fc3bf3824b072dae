"""S3 faults, injected by a small HTTP proxy in front of the moto server.

The DAG's AWS connection points at the proxy, which forwards every request to moto except the
ones a rule answers itself with an S3 error (503 SlowDown, 500 InternalError, 403 AccessDenied),
or that it lets through after changing the bucket behind the loader's back (an object deleted or
rewritten between the listing and the read).

- throttling and 5xx: retried by the S3 client with backoff (botocore "standard" mode, set by
  airflow.connections.s3_client unless the connection says otherwise); the hour loads;
- an object deleted (or rewritten) between list and read: an error naming the object, the hour
  is listed again within the same try and loads what is there (extract.extract_listing_again);
- access denied: the task fails at once, without a retry, with a message naming bucket and object.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from psycopg import sql

from tests.integration.conftest import run_hour
from tests.integration.support import SIMPLE, object_key, run_hour_with_retries, task_tries

HOURS = [datetime(2026, 5, 6, hour, tzinfo=UTC) for hour in (1, 2, 3)]
ERROR_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "AccessDenied": "Access Denied",
}


@dataclass
class Rule:
    method: str
    path: str  # a regular expression searched in the request path, query included
    status: int = 0  # 0: forward to moto (after ``before``)
    code: str = ""
    times: int | None = 1  # how many matching requests the rule takes; None: all of them
    before: Callable[[], None] | None = None


@dataclass
class FaultProxy:
    upstream: str  # the moto server
    url: str = ""  # where the proxy listens
    rules: list[Rule] = field(default_factory=list)
    requests: list[tuple[float, str, str, int]] = field(default_factory=list)  # (time, method, path, status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.method == method and re.search(rule.path, path) and (rule.times is None or rule.times > 0):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def record(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self.requests.append((time.monotonic(), method, path, status))

    def statuses(self, method: str, pattern: str) -> list[int]:
        return [status for _at, verb, path, status in self.requests if verb == method and re.search(pattern, path)]


def handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    chunk = self.rfile.read(size + 2)[:size]
                    if not size:
                        break
                    chunks.append(chunk)
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def handle_any(self) -> None:
            body = self.body()
            rule = proxy.take(self.command, self.path)
            if rule is not None and rule.status:
                error = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{rule.code}</Code>'
                    f"<Message>{ERROR_MESSAGES[rule.code]}</Message><RequestId>fault-proxy</RequestId></Error>"
                ).encode()
                payload = b"" if self.command == "HEAD" else error
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                proxy.record(self.command, self.path, rule.status)
                return
            if rule is not None and rule.before is not None:
                rule.before()
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in ("expect", "transfer-encoding", "content-length", "connection")
            }
            connection = HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            finally:
                connection.close()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                    self.send_header(name, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            proxy.record(self.command, self.path, response.status)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any

    return Handler


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    state = FaultProxy(upstream=os.environ["AWS_ENDPOINT_URL"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def through(proxy: FaultProxy) -> dict[str, str]:
    """The environment that points the DAG's AWS connection at the proxy."""
    connection = json.loads(os.environ["AIRFLOW_CONN_FIREHOSE_S3"])
    connection["extra"] = {**connection.get("extra", {}), "endpoint_url": proxy.url}
    return {"AIRFLOW_CONN_FIREHOSE_S3": json.dumps(connection)}


@pytest.fixture(scope="module")
def stream(streams, s3):
    entry = streams.declare(s3, "rel_s3", **SIMPLE)
    for hour in HOURS:
        for name in ("00-a", "10-b", "20-c"):
            records = [{"id": f"{hour:%H}-{name}-{n}", "seq": 1, "note": name} for n in range(5)]
            body = b"\n".join(orjson.dumps(record) for record in records)
            s3.put_object(Bucket=entry["bucket"], Key=object_key(hour, name), Body=body)
    return entry


def task_output(capfd, caplog) -> str:
    """What the DAG run logged: task logs go to stdout, or to the logging handlers pytest captures."""
    captured = capfd.readouterr()
    return "\n".join([captured.out, captured.err, caplog.text])


def loaded_ids(warehouse, entry: dict[str, Any], hour: datetime) -> set[str]:
    query = sql.SQL("SELECT id FROM {} WHERE id LIKE %s").format(sql.Identifier(*entry["table"].split(".")))
    return {row[0] for row in warehouse.execute(query, (f"{hour:%H}-%",)).fetchall()}


def ledger(warehouse, entry: dict[str, Any], hour: datetime) -> dict[str, str]:
    rows = warehouse.execute(
        "SELECT object_key, etag FROM firehose_loader.ledger WHERE stream = %s AND hour = %s",
        (entry["name"], hour.replace(tzinfo=None)),
    ).fetchall()
    return dict(rows)


def test_throttling_and_server_errors_are_retried_with_backoff_and_the_hour_loads(stream, proxy, warehouse):
    hour = HOURS[0]
    bucket = stream["bucket"]
    a, b = (re.escape(f"/{bucket}/{object_key(hour, name)}") for name in ("00-a", "10-b"))
    staging = re.escape(f"/{bucket}/firehose-loader/staging/{stream['name']}/")
    listing = re.escape(f"/{bucket}?") + r".*list-type=2.*prefix=events"
    proxy.rules = [
        Rule("GET", listing, 500, "InternalError", times=2),
        Rule("GET", a, 503, "SlowDown", times=2),
        Rule("GET", b, 503, "SlowDown", times=1),
        Rule("PUT", staging, 503, "SlowDown", times=1),
        Rule("GET", staging, 500, "InternalError", times=1),
    ]
    run = run_hour(stream["name"], hour, env=through(proxy))
    assert run.state == "success"
    assert task_tries(run)["extract_hour"] == ("success", 1)  # the client's retries, not Airflow's
    assert len(loaded_ids(warehouse, stream, hour)) == 15
    assert proxy.statuses("GET", listing)[:3] == [500, 500, 200]
    assert proxy.statuses("GET", a) == [503, 503, 200]
    assert proxy.statuses("GET", b) == [503, 200]
    assert proxy.statuses("PUT", staging) == [503, 200, 200]  # the stage (throttled once), then its key file
    assert proxy.statuses("GET", staging) == [500, 200]
    assert all(rule.times == 0 for rule in proxy.rules)


def test_objects_deleted_or_rewritten_between_list_and_read_are_named_and_the_hour_is_listed_again(
    stream, proxy, s3, warehouse, capfd, caplog
):
    hour = HOURS[1]
    bucket = stream["bucket"]
    deleted, rewritten = object_key(hour, "10-b"), object_key(hour, "20-c")
    newer = b'{"id": "02-20-c-new", "seq": 2, "note": "rewritten"}'
    proxy.rules = [
        Rule("GET", re.escape(f"/{bucket}/{deleted}"), before=lambda: s3.delete_object(Bucket=bucket, Key=deleted)),
        Rule(
            "GET",
            re.escape(f"/{bucket}/{rewritten}"),
            before=lambda: s3.put_object(Bucket=bucket, Key=rewritten, Body=newer),
        ),
    ]
    run = run_hour(stream["name"], hour, env=through(proxy))
    assert run.state == "success"
    assert task_tries(run)["extract_hour"] == ("success", 1)
    output = task_output(capfd, caplog)
    assert f"s3://{bucket}/{deleted} was listed but is gone: deleted between list and read (NoSuchKey)" in output
    assert f"s3://{bucket}/{rewritten} was rewritten between list and read" in output
    assert "listing 2 of 3" in output and "listing 3 of 3" in output

    # What is there now is loaded; what is gone is neither loaded nor in the ledger.
    assert loaded_ids(warehouse, stream, hour) == {f"02-00-a-{n}" for n in range(5)} | {"02-20-c-new"}
    current = s3.head_object(Bucket=bucket, Key=rewritten)["ETag"].strip('"')
    assert ledger(warehouse, stream, hour) == {
        object_key(hour, "00-a"): s3.head_object(Bucket=bucket, Key=object_key(hour, "00-a"))["ETag"].strip('"'),
        rewritten: current,
    }


def test_access_denied_fails_the_task_at_once_with_a_message(stream, proxy, warehouse, capfd, caplog):
    hour = HOURS[2]
    bucket = stream["bucket"]
    denied = re.escape(f"/{bucket}/{object_key(hour, '10-b')}")
    proxy.rules = [Rule("GET", denied, 403, "AccessDenied", times=None)]
    # Production retries on the task (3): fail-fast must not use them.
    run = run_hour_with_retries(stream["name"], hour, {"extract_hour": 3}, env=through(proxy))
    assert run.state == "failed"
    tries = task_tries(run)
    assert tries["extract_hour"] == ("failed", 1)
    assert tries["load_and_merge"][0] == "upstream_failed"
    assert proxy.statuses("GET", denied) == [403]  # the client does not retry it either
    output = task_output(capfd, caplog)
    assert f"access to bucket '{bucket}' was denied" in output
    assert f"(AccessDenied on s3://{bucket}/{object_key(hour, '10-b')})" in output
    assert loaded_ids(warehouse, stream, hour) == set()
    assert ledger(warehouse, stream, hour) == {}
