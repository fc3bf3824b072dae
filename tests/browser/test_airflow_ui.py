"""What a data engineer sees: the login, every stream's DAGs without import errors, and the audit
dashboard with the numbers the audit recorded, in the UI and on its own; anonymous callers get nothing."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from tests.browser.conftest import BEFORE_LOAD, DAMAGE, SCREENSHOTS, audit_results, hour_text, ledger, provenance_rows


def fetch(url: str, token: str | None = None) -> tuple[int, dict[str, str], str]:
    """GET without following redirects: (status, headers, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_anonymous_requests_get_nothing(site, browser):
    base, name = site.base_url, site.loaded.name
    hour = hour_text(site.damaged)
    for path in (
        "/firehose/api/streams",
        f"/firehose/api/streams/{name}/hours",
        f"/firehose/api/streams/{name}/hours/{hour}",
    ):
        status, _, body = fetch(base + path)
        assert status == 401, (path, status, body)
        assert name not in body
        status, _, body = fetch(base + path, token="forged.jwt.token")
        assert status == 403, (path, status, body)
    status, headers, body = fetch(f"{base}/firehose/?stream={name}&hour={hour}")
    assert status == 303 and "/auth/login?next=" in headers["location"]
    assert name not in body
    # A browser without the session cookie ends on the UI's login page, and once logged in, back on the dashboard.
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base}/firehose/?stream={name}")
        page.wait_for_url("**/auth/login**")
        assert page.locator("input[name=password]").is_visible()
        assert name not in page.content()
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", site.password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/firehose/?stream={name}")
        page.locator(f"#chart-{name}").wait_for()
    finally:
        context.close()


def test_every_stream_has_its_dags_and_there_are_no_import_errors(site, page):
    page.goto(f"{site.base_url}/dags")
    for stream in site.streams:
        for dag_id in (stream.ingest_dag_id, stream.audit_dag_id):
            page.get_by_role("link", name=dag_id, exact=True).wait_for()
    page.screenshot(path=str(SCREENSHOTS / "dags.png"))
    token = site.token()
    errors = json.loads(fetch(f"{site.base_url}/api/v2/importErrors", token)[2])
    assert errors["total_entries"] == 0, errors
    # The home page would show a "Dag Import Errors" button next to its stats.
    page.goto(f"{site.base_url}/")
    page.get_by_text("Active Dags").first.wait_for()
    assert page.get_by_text(re.compile("import error", re.IGNORECASE)).count() == 0
    # Each DAG's page has its documentation for a data engineer (doc_md).
    for stream in site.streams:
        for dag_id, heading in (
            (stream.ingest_dag_id, "Which hour a run loads"),
            (stream.audit_dag_id, "What a run audits"),
        ):
            page.goto(f"{site.base_url}/dags/{dag_id}")
            page.get_by_role("button", name="Dag Docs").click()
            page.get_by_role("dialog").get_by_text(heading).wait_for()
            if dag_id == site.loaded.audit_dag_id:
                page.screenshot(path=str(SCREENSHOTS / "audit-dag-docs.png"))


def test_the_dashboard_is_in_the_ui_navigation(site, page):
    page.goto(f"{site.base_url}/")
    page.get_by_role("link", name="Firehose audit").click()
    page.wait_for_url("**/plugin/firehose-audit")
    frame = page.frame_locator("iframe")
    frame.locator(f"#chart-{site.loaded.name}").wait_for()
    assert frame.locator("svg.chart").count() == len(site.streams)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-in-ui.png"))


def test_the_chart_shows_what_the_audit_recorded(site, page):
    page.goto(f"{site.base_url}/firehose/")
    chart = page.locator(f"#chart-{site.loaded.name}")
    chart.wait_for()
    recorded = audit_results(site.loaded)
    assert set(recorded) == set(site.hours)
    for hour in site.hours:
        row = recorded[hour]
        group = chart.locator(f'g.hour[data-hour="{hour_text(hour)}"]')
        shown = {name: group.get_attribute(f"data-{name}") for name in ("s3-keys", "missing", "duplicate", "stale")}
        assert shown == {
            "s3-keys": str(row["s3_keys"]),
            "missing": str(row["missing_keys"]),
            "duplicate": str(row["duplicate_keys"]),
            "stale": str(row["stale_keys"]),
        }
        assert group.get_attribute("data-late") == str(row["late_objects"])
        assert group.get_attribute("data-repaired") == str(row["repaired_keys"])
        assert group.get_attribute("data-audit-status") == row["status"]
        # The real-time path at first merge: what the simulator wrote before the load (realtime_quality).
        keys = row["s3_keys"]
        assert group.get_attribute("data-realtime-missing") == str(BEFORE_LOAD["drops"])
        assert group.get_attribute("data-realtime-duplicate") == str(BEFORE_LOAD["duplicates"])
        assert group.get_attribute("data-realtime-stale") == str(BEFORE_LOAD["older"] + BEFORE_LOAD["older_in_place"])
        assert float(group.get_attribute("data-drop-rate")) == pytest.approx(BEFORE_LOAD["drops"] / keys)
        assert group.get_attribute("data-warehouse-rows") == str(provenance_rows(site.loaded, hour))
        assert "drops" in group.get_attribute("class").split()
        assert ("damaged" in group.get_attribute("class").split()) == (row["missing_keys"] > 0)
    damaged = recorded[site.damaged]
    assert (damaged["missing_keys"], damaged["duplicate_keys"], damaged["stale_keys"]) == (
        DAMAGE["drops"],
        DAMAGE["duplicates"],
        DAMAGE["stale"],
    )
    assert damaged["status"] == "repaired"
    # The bars are drawn, the real-time path's drops are highlighted, the window's drop rate is the first merge's.
    assert chart.locator("rect.drop-band").count() == len(site.hours)
    assert chart.locator(f'g.hour[data-hour="{hour_text(site.damaged)}"] rect.missing-keys').count() == 1
    section = page.locator(f"#stream-{site.loaded.name}")
    rate = BEFORE_LOAD["drops"] * len(site.hours) / sum(row["s3_keys"] for row in recorded.values())
    assert section.locator('[data-kpi="drop-rate"] dd').inner_text() == f"{rate:.2%}"
    assert section.locator('[data-kpi="hours-with-drops"] dd').inner_text() == str(len(site.hours))
    assert section.locator('[data-kpi="missing"] dd').inner_text() == str(DAMAGE["drops"])
    assert section.locator('[data-kpi="hours-damaged"] dd').inner_text() == "1"
    table_row = section.locator(f'table.hours tr[data-hour="{hour_text(site.damaged)}"]')
    assert "damaged" in table_row.get_attribute("class")
    assert table_row.locator('td[data-col="missing"]').inner_text() == str(DAMAGE["drops"])
    assert table_row.locator('td[data-col="realtime-missing"]').inner_text() == str(BEFORE_LOAD["drops"])
    # The stream that never ran is there too, and says so.
    idle = page.locator(f"#stream-{site.idle.name}")
    assert "Nothing loaded yet" in idle.inner_text() and "No real-time writer" in idle.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)


def test_an_hour_opens_its_ledger(site, page):
    page.goto(f"{site.base_url}/firehose/")
    page.locator(f'#chart-{site.loaded.name} g.hour[data-hour="{hour_text(site.damaged)}"] rect.hit').click()
    panel = page.locator(f"#ledger-{site.loaded.name}")
    panel.wait_for()
    assert panel.get_attribute("data-hour") == hour_text(site.damaged)
    objects = ledger(site.loaded, site.damaged)
    rows = panel.locator("table.objects tr[data-object]")
    assert rows.count() == len(objects)
    assert [rows.nth(index).get_attribute("data-object") for index in range(rows.count())] == [
        item["object_key"] for item in objects
    ]
    total = panel.locator("table.objects tr.total td")
    assert total.nth(4).inner_text() == f"{sum(item['records_raw'] for item in objects):,}"
    assert total.nth(6).inner_text() == f"{sum(item['records_quarantined'] for item in objects):,}"
    quarantined = [item for item in objects if item["records_quarantined"]]
    assert quarantined and quarantined[0]["quarantine_key"] in panel.inner_text()
    audits = panel.locator("table.audits tbody tr")
    assert audits.count() == 1 and "repaired" in audits.first.inner_text()
    page.locator(f"#ledger-{site.loaded.name}").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "ledger.png"), full_page=True)


def test_the_json_api_matches_the_page(site):
    token = site.token()
    status, _, body = fetch(f"{site.base_url}/firehose/api/streams", token)
    assert status == 200
    streams = {item["stream"]: item for item in json.loads(body)["streams"]}
    assert set(streams) == {stream.name for stream in site.streams}
    assert streams[site.loaded.name]["summary"]["missing_keys"] == DAMAGE["drops"]
    assert streams[site.idle.name]["ready"] is False
    hours = json.loads(fetch(f"{site.base_url}/firehose/api/streams/{site.loaded.name}/hours", token)[2])
    recorded = audit_results(site.loaded)
    points = {point["hour"][:16]: point for point in hours["hours"]}
    for hour, row in recorded.items():
        point = points[hour_text(hour)]
        assert (point["s3_keys"], point["missing_keys"], point["audit_status"]) == (
            row["s3_keys"],
            row["missing_keys"],
            row["status"],
        )
    detail = json.loads(
        fetch(f"{site.base_url}/firehose/api/streams/{site.loaded.name}/hours/{hour_text(site.damaged)}", token)[2]
    )
    assert len(detail["objects"]) == len(ledger(site.loaded, site.damaged))
    assert fetch(f"{site.base_url}/firehose/api/streams/nope/hours", token)[0] == 404
    assert fetch(f"{site.base_url}/firehose/api/streams/{site.loaded.name}/hours/yesterday", token)[0] == 422
