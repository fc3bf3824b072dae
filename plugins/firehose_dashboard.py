"""Airflow plugin: the Firehose audit dashboard, a FastAPI app inside the Airflow 3 api-server.

* ``/firehose/``: the page, per stream the last 48 hours as a chart (S3 keys vs rows in the
  warehouse; damage after the load, from the audits: missing / doubled / stale / late per hour;
  the real-time path at each hour's first merge, from ``realtime_quality``: its drop rate, hours
  it dropped keys of in red) and, for a chosen hour (``?stream=<name>&hour=2026-03-01T10:00``), its ledger.
* ``/firehose/api/streams``, ``/firehose/api/streams/<name>/hours``,
  ``/firehose/api/streams/<name>/hours/<hour>``: the same as JSON.
* A link in the UI's navigation ("Firehose audit"), which shows the page inside the UI.

Airflow does not authenticate a plugin's FastAPI app (it is mounted, and a mount inherits none
of the core API's dependencies), so every route here depends on :func:`authenticated_user`,
which calls the api-server's own ``airflow.api_fastapi.core_api.security.get_user``: the JWT from
an ``Authorization: Bearer`` header, or the UI's session cookie, checked by the configured auth
manager. Without a valid token the API answers 401 (403 for a forged token) and the page
redirects to the login page. Each stream is shown only to users the auth manager lets read its
audit DAG. Everything is read-only, from the warehouse connection named in the streams file.

A stream the streams file declares wrongly has no DAGs; the page and ``/firehose/api/streams``
list it as refused, with the field at fault, beside the valid streams. Only an error of the
file as a whole (no stream to show) answers 500.

The queries, the model, the chart and the page are in ``firehose_loader/dashboard/`` (tested without Airflow);
``airflow.api_fastapi`` is imported on the first request only, so the scheduler, dag-processor
and task processes that load plugins do not pay for it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse

from firehose_loader.config import ConfigError

log = logging.getLogger(__name__)

URL_PREFIX = "/firehose"
# A small bar-chart icon for the navigation, inline: nothing is fetched from elsewhere.
ICON = (
    "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' "
    "stroke='%23646cff' stroke-width='2' stroke-linecap='round'><path d='M4 20V10M10 20V4M16 20v-7M22 20H2'/></svg>"
)


class LoginRequired(Exception):
    """Raised for the HTML page when the request carries no valid token: answered with a redirect to the login."""


async def authenticated_user(request: Request) -> Any:
    """The api-server's authentication, exactly as the core API does it (bearer header, then the UI cookie)."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPBearer

    credentials = await HTTPBearer(auto_error=False)(request)
    return await get_user(request=request, _oauth_token=None, bearer_credentials=credentials)


async def page_user(request: Request) -> Any:
    try:
        return await authenticated_user(request)
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            raise LoginRequired() from exc
        raise


User = Annotated[Any, Depends(authenticated_user)]
PageUser = Annotated[Any, Depends(page_user)]


def may_read_dag(user: Any, dag_id: str) -> bool:
    """Whether the auth manager lets the user read the DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return bool(get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user))


def readable_streams(user: Any) -> tuple[list[Any], list[Any], Any, tuple[Any, ...]]:
    """(valid streams the user may read, valid streams hidden from them, settings, the refused streams' errors)."""
    from firehose_loader.config import load_streams

    config = load_streams()
    shown, hidden = [], []
    for stream in config.streams:
        (shown if may_read_dag(user, stream.audit_dag_id) else hidden).append(stream)
    return shown, hidden, config.settings, config.errors


def one_stream(user: Any, name: str) -> tuple[Any, Any]:
    shown, hidden, settings, refused = readable_streams(user)
    for stream in shown:
        if stream.name == name:
            return stream, settings
    if any(stream.name == name for stream in hidden):
        raise HTTPException(403, f"you may not read the DAGs of stream {name!r}")
    for error in refused:
        if error.stream == name:
            raise HTTPException(404, f"stream {name!r} is refused by the streams file: {error.message}")
    raise HTTPException(404, f"no stream {name!r} in the streams file")


def refused_json(refused: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [{"stream": e.stream, "index": e.index, "field": e.field, "message": e.message} for e in refused]


def open_warehouse(settings: Any) -> Any:
    """A read-only DB-API connection through the warehouse connection's own provider hook."""
    from firehose_loader.airflow.connections import warehouse_connection

    conn, _dialect = warehouse_connection(settings)
    for attribute in ("read_only", "readonly"):  # psycopg 3, psycopg2
        if hasattr(type(conn), attribute):
            setattr(conn, attribute, True)
            break
    return conn


def parse_time(text: str | None, what: str) -> datetime | None:
    from firehose_loader.dashboard.model import parse_hour

    if not text:
        return None
    try:
        return parse_hour(text)
    except ValueError as exc:
        raise HTTPException(422, f"{what}: {exc}") from None


def airflow_root(request: Request) -> str:
    """Where the Airflow UI is, seen from this mounted app (for links that leave the page)."""
    root = request.scope.get("root_path", "")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else ""


app = FastAPI(
    title="Firehose audit dashboard",
    description="The loader's audit and load tables, read-only. Authenticated like the Airflow API.",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


@app.exception_handler(LoginRequired)
async def redirect_to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


@app.exception_handler(ConfigError)
async def streams_file_error(request: Request, exc: ConfigError) -> PlainTextResponse:
    # Only an error of the file as a whole gets here: a refused stream is listed beside the valid ones.
    return PlainTextResponse(f"The streams file is not valid: {exc}", status_code=500)


@app.get("/", response_class=HTMLResponse)
def page(
    request: Request,
    user: PageUser,
    stream: Annotated[str | None, Query(description="the stream whose hour to show")] = None,
    hour: Annotated[str | None, Query(description="an hour, e.g. 2026-03-01T10:00, to show the ledger of")] = None,
    end: Annotated[str | None, Query(description="the last hour of the window (default: now)")] = None,
) -> HTMLResponse:
    from firehose_loader.dashboard.model import StreamDashboard, build_points, summarize, window
    from firehose_loader.dashboard.page import render_page
    from firehose_loader.dashboard.queries import query_hour, query_stream

    now = datetime.now(UTC)
    end_hour = parse_time(end, "end")
    chosen_hour = parse_time(hour, "hour")
    start, stop = window(end_hour, now)
    shown, hidden, settings, refused = readable_streams(user)
    if stream is not None and chosen_hour is not None and stream not in {item.name for item in shown}:
        raise HTTPException(404, f"no stream {stream!r} you may read")
    dashboards, errors, detail = [], {}, None
    conn = None
    try:
        conn = open_warehouse(settings)
    except Exception as exc:
        log.exception("the dashboard cannot connect to the warehouse")
        errors = {item.name: f"cannot connect to the warehouse ({settings.warehouse_conn_id}): {exc}" for item in shown}
    try:
        for item in shown:
            try:
                if conn is None:
                    raise RuntimeError(errors[item.name])
                dashboards.append(query_stream(conn, item, settings, start, stop))
                if item.name == stream and chosen_hour is not None:
                    detail = query_hour(conn, item, settings, chosen_hour)
            except Exception as exc:
                if conn is not None:
                    log.exception("the dashboard cannot read stream %s", item.name)
                    errors[item.name] = f"cannot read {item.name}: {exc}"
                empty = build_points(start, stop, [], [], {})
                dashboards.append(
                    StreamDashboard(
                        item.name,
                        item.qualified_table,
                        item.ingest_dag_id,
                        item.audit_dag_id,
                        start,
                        stop,
                        False,
                        empty,
                        summarize(empty),
                        realtime_writer=item.realtime_writer,
                    )
                )
    finally:
        if conn is not None:
            conn.close()
    body = render_page(
        dashboards,
        now=now,
        end=end_hour,
        selected_stream=stream,
        detail=detail,
        airflow_root=airflow_root(request),
        errors=errors,
        hidden_streams=len(hidden),
        refused=refused,
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


def _json(value: Any) -> JSONResponse:
    from firehose_loader.dashboard.model import jsonable

    return JSONResponse(jsonable(value), headers={"Cache-Control": "no-store"})


@app.get("/api/streams")
def api_streams(
    user: User, end: Annotated[str | None, Query(description="the last hour of the window")] = None
) -> JSONResponse:
    """Every stream you may read, with its window's summary (no per-hour points), and the refused streams' errors."""
    from firehose_loader.dashboard.model import window
    from firehose_loader.dashboard.queries import query_stream

    start, stop = window(parse_time(end, "end"), datetime.now(UTC))
    shown, _hidden, settings, refused = readable_streams(user)
    conn = open_warehouse(settings)
    try:
        dashboards = [query_stream(conn, stream, settings, start, stop) for stream in shown]
    finally:
        conn.close()
    return _json(
        {
            "start": start,
            "end": stop,
            "streams": [
                {
                    "stream": item.stream,
                    "table": item.table,
                    "ingest_dag_id": item.ingest_dag_id,
                    "audit_dag_id": item.audit_dag_id,
                    "ready": item.ready,
                    "realtime_writer": item.realtime_writer,
                    "summary": item.summary,
                }
                for item in dashboards
            ],
            "refused": refused_json(refused),
        }
    )


@app.get("/api/streams/{name}/hours")
def api_hours(
    user: User, name: str, end: Annotated[str | None, Query(description="the last hour of the window")] = None
) -> JSONResponse:
    """The stream's window: one point per hour (load, S3 keys, warehouse rows, the real-time path at first
    merge with its drop rate, damage after the load)."""
    from firehose_loader.dashboard.model import window
    from firehose_loader.dashboard.queries import query_stream

    stream, settings = one_stream(user, name)
    start, stop = window(parse_time(end, "end"), datetime.now(UTC))
    conn = open_warehouse(settings)
    try:
        return _json(query_stream(conn, stream, settings, start, stop))
    finally:
        conn.close()


@app.get("/api/streams/{name}/hours/{hour}")
def api_hour(user: User, name: str, hour: str) -> JSONResponse:
    """One hour: its load_hours row, its ledger (one row per object), its realtime_quality row and every audit of it."""
    from firehose_loader.dashboard.queries import query_hour

    stream, settings = one_stream(user, name)
    moment = parse_time(hour, "hour")
    conn = open_warehouse(settings)
    try:
        return _json(query_hour(conn, stream, settings, moment))
    finally:
        conn.close()


class FirehoseDashboardPlugin(AirflowPlugin):
    name = "firehose_dashboard"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": app, "url_prefix": URL_PREFIX, "name": "Firehose audit dashboard"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Firehose audit",
            "href": "firehose/",
            "url_route": "firehose-audit",
            "destination": "nav",
            "icon": ICON,
        }
    ]
