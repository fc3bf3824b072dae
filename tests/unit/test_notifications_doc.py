"""docs/notifications.md: every notifier example is a valid ``audit_notifier``, renders the alert, and the
webhook example delivers it (to a local HTTP server)."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from firehose_loader.airflow.notify import CONTEXT_KEY, build_notifier, send_alert
from firehose_loader.config import parse_notifier
from tests.unit.stream_factory import make_stream
from tools.send_test_alert import sample_alert

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
FENCE = re.compile(
    r"^(?P<indent> *)(?P<fence>`{3,})yaml\n(?P<body>.*?)^(?P=indent)(?P=fence)$", re.MULTILINE | re.DOTALL
)


def examples() -> dict[str, dict]:
    found = {}
    for match in FENCE.finditer(DOC.read_text(encoding="utf-8")):
        body = "\n".join(line[len(match["indent"]) :] for line in match["body"].splitlines())
        document = yaml.safe_load(body)
        if "audit_notifier" in document:
            found[document["audit_notifier"]["class"].rsplit(".", 1)[-1]] = document
    return found


EXAMPLES = examples()


def test_the_doc_has_an_email_a_slack_and_a_webhook_example():
    assert {"SmtpNotifier", "SlackWebhookNotifier", "HttpNotifier"} <= set(EXAMPLES)
    for document in EXAMPLES.values():
        assert isinstance(document["audit_alert_threshold"], int)


def rendered(name: str) -> tuple[object, dict, dict]:
    spec = parse_notifier(EXAMPLES[name]["audit_notifier"], name)
    notifier = build_notifier(spec)
    alert, context = sample_alert(make_stream(name="orders"), datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
    context = {**context, CONTEXT_KEY: alert}
    notifier._update_context(context)
    notifier.render_template_fields(context)
    return notifier, alert, context


def test_email_example_renders_the_summary_and_the_table():
    notifier, alert, _ = rendered("SmtpNotifier")
    assert notifier.subject == f"[firehose-loader] {alert['summary']}"
    assert alert["report"] in notifier.html_content
    assert "/firehose/?stream=orders" in notifier.html_content
    assert notifier.smtp_conn_id == "smtp_alerts"


def test_slack_example_renders_the_summary_and_the_table():
    pytest.importorskip("airflow.providers.slack", reason="the Slack provider is not installed (see the doc)")
    notifier, alert, _ = rendered("SlackWebhookNotifier")
    assert alert["summary"] in notifier.text and alert["report"] in notifier.text


def test_webhook_example_renders_the_alert_as_json():
    notifier, alert, context = rendered("HttpNotifier")
    body = json.loads(notifier.data)
    assert body == {"source": "firehose-loader", "run_id": context["run_id"], "alert": alert}


def test_webhook_example_delivers_the_alert(monkeypatch):
    received: list[tuple[str, dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_ALERTS_WEBHOOK",
            json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{server.server_port}"}),
        )
        spec = parse_notifier(EXAMPLES["HttpNotifier"]["audit_notifier"], "webhook")
        alert, context = sample_alert(make_stream(name="orders"), datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
        send_alert(spec, context, alert)
    finally:
        server.shutdown()
        server.server_close()
    [(path, headers, body)] = received
    assert path == "/hooks/firehose-loader"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["alert"]["hours"][1]["status"] == "failed"


def test_the_default_notifier_logs_the_test_alert(caplog):
    alert, context = sample_alert(make_stream(name="orders"), datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
    send_alert(parse_notifier(None, "default"), context, alert)
    assert "TEST orders" in caplog.text and "failed" in caplog.text
