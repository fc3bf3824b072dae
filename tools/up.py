"""`make up` / `make down` / `make status`: the local stack, Airflow 3 and a simulated Firehose producer.

``up`` (idempotent):

1. without ``STREAMS_CONFIG``, writes ``.local/up/streams.yml``: the bundled streams, with the
   example stream in freshness mode ``events`` on this stack's SQS queue (``STREAMS_CONFIG`` given
   is used as it is); starts the local stack (tools/stack.py: moto S3 + SQS + PostgreSQL), which
   creates the queue and the bucket's S3 event notification;
2. starts ``tools/producer.py`` (not with ``FIREHOSE_PRODUCER=0``): the example stream's hours of
   the last few hours and the current one (an object about every minute for a stream with
   micro-batches), a lossy real-time path that damages loaded hours, and a late object now and then;
3. gives the UI an Airflow of its own: ``AIRFLOW_HOME=.local/up/airflow`` and the metadata database
   ``airflow_ui`` (migrated here). The tests, `make demo` and the benchmark use ``.local/airflow``
   and the database ``airflow``, so no DAG, run or serialized DAG of theirs is ever scheduled here;
4. starts the Airflow components one by one, so that no task can run before the execution API
   answers: first ``airflow api-server`` (one worker), and only once ``/api/v2/version`` and
   ``/execution/health`` answer, ``airflow scheduler`` (LocalExecutor, parallelism 4),
   ``airflow dag-processor`` and ``airflow triggerer``. Login: the simple auth manager's user
   ``admin`` (password ``admin``, kept in ``.local/up/airflow/simple_auth_manager_passwords.json``);
5. before the scheduler starts, through the api-server: deletes the DAGs (with their runs) that
   are not in the streams file it was given (``STREAMS_CONFIG``, or include/streams.yml), pauses
   the audit DAGs, and clears the failed runs of the hours the producer writes, so those hours
   run again (a run that failed because a component was down, or was stopped by `make down`,
   resumes instead of staying red). Task instances left queued or running by the previous start
   are reset by the scheduler itself when it starts (its previous job is no longer running);
6. once the DAGs are parsed: unpauses every ``ingest_<stream>`` and ``microbatch_<stream>`` DAG (the streams file says
   ``catchup: false``, so the scheduler runs the latest complete hour) and creates a **backfill**
   of the hours before it that the producer wrote, with ``reprocess_behavior: failed``, as
   ``airflow backfill create --reprocess-behavior failed`` would (an unfinished backfill of the
   previous start is resumed instead). ``audit_<stream>`` stays paused until those runs are done
   (a small helper process waits for them), so its first run audits loaded hours;
7. prints the URL and the login.

``down`` stops the helper, the producer, the scheduler (and the task processes it runs), the
triggerer, the dag-processor, the api-server and the stack, then checks that none of the
processes it knew about still runs. ``status`` says what runs and lists every failed run, one
line each, with the task that failed and its error.

Everything it starts is recorded under ``.local/up/`` (pid files and logs).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import yaml

from firehose_loader.config import DEFAULT_STREAMS_FILE, load_config, read_document
from firehose_loader.layout import HOUR, hour_start
from tools import airflow_local, stack

ROOT = Path(__file__).resolve().parents[1]

UP = stack.LOCAL / "up"
AIRFLOW_HOME = UP / "airflow"
# The start order: the api-server (the execution API) before anything that runs or schedules a task.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
PRODUCER_PID = UP / "producer.pid"
PRODUCER_LOG = UP / "producer.log"
PRODUCER_READY = UP / "producer.ready"
RELEASE_PID = UP / "release-audits.pid"
RELEASE_LOG = UP / "release-audits.log"
PORT = int(os.environ.get("FIREHOSE_AIRFLOW_PORT", "8080"))
BASE_URL = f"http://localhost:{PORT}"
BACKFILL_HOURS = int(os.environ.get("FIREHOSE_PRODUCER_HOURS", "6"))
PRODUCER_STREAM = os.environ.get("FIREHOSE_PRODUCER_STREAM", "events")
# FIREHOSE_PRODUCER=0: no simulated producer (the streams' buckets get only what you put there).
PRODUCER = os.environ.get("FIREHOSE_PRODUCER", "1") != "0"
# Without STREAMS_CONFIG, `up` runs the bundled streams with the example stream in freshness mode events.
EVENTS_STREAMS = UP / "streams.yml"
EVENTS_QUEUE = "firehose-events"


def pid_file(component: str) -> Path:
    return UP / f"{component}.pid"


def log_file(component: str) -> Path:
    return UP / f"{component}.log"


def say(message: str) -> None:
    print(message, flush=True)


def jwt_secret() -> str:
    """The secret the api-server and the scheduler share to sign and check the tasks' execution API tokens."""
    path = AIRFLOW_HOME / "jwt_secret"
    if not path.exists() or not path.read_text().strip():
        AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def environment() -> dict[str, str]:
    """The stack's environment with the UI's own AIRFLOW_HOME and metadata database."""
    extra = {
        # New DAGs start paused: `up` unpauses the ingest DAGs itself and the audit DAGs after the backfill.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret(),
        # The scheduler's and the triggerer's log servers (8793, 8794 by default) on free ports: another
        # Airflow on this machine keeps its own.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(airflow_local.free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(airflow_local.free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    if os.environ.get("STREAMS_CONFIG"):
        # The components run in the project's folder; a relative path given to `make up` means the caller's.
        extra["STREAMS_CONFIG"] = str(Path(os.environ["STREAMS_CONFIG"]).resolve())
    return airflow_local.airflow_environment(AIRFLOW_HOME, PORT, stack.UI_DATABASE, **extra)


def running(path: Path) -> bool:
    try:
        return airflow_local.alive(int(path.read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return False


def streams_dag_ids() -> tuple[list[str], list[str]]:
    streams = load_config().streams
    return [stream.ingest_dag_id for stream in streams], [stream.audit_dag_id for stream in streams]


def microbatch_dag_ids() -> list[str]:
    return [stream.microbatch_dag_id for stream in load_config().streams if stream.freshness.microbatches]


def use_streams_file(write: bool) -> None:
    """Without STREAMS_CONFIG: the bundled streams, with the example stream in freshness mode events.

    Its S3 event queue is on the local stack (tools/stack.py creates the queue and the bucket's
    notification), so the file is written here, with this stack's port, as ``.local/up/streams.yml``.
    ``write=False`` (down, status) only points STREAMS_CONFIG at the file the last `up` wrote.
    """
    if os.environ.get("STREAMS_CONFIG"):
        return
    if write:
        document, _ = read_document(DEFAULT_STREAMS_FILE)
        for entry in document["streams"]:
            if entry.get("name") == PRODUCER_STREAM and "freshness" not in entry:
                entry["freshness"] = {"mode": "events", "queue_url": stack.local_queue_url(EVENTS_QUEUE)}
        UP.mkdir(parents=True, exist_ok=True)
        header = f"# Written by `make up` from {stack.shown(DEFAULT_STREAMS_FILE)}: the example stream in freshness mode events.\n"
        EVENTS_STREAMS.write_text(header + yaml.safe_dump(document, sort_keys=False))
    if EVENTS_STREAMS.exists():
        os.environ["STREAMS_CONFIG"] = str(EVENTS_STREAMS)


def start_producer(env: dict[str, str]) -> None:
    if running(PRODUCER_PID):
        say(f"producer: already running (pid {PRODUCER_PID.read_text().strip()})")
        return
    PRODUCER_READY.unlink(missing_ok=True)
    command = [
        str(airflow_local.VENV_BIN / "python"),
        "-m",
        "tools.producer",
        "--stream",
        PRODUCER_STREAM,
        "--hours",
        str(BACKFILL_HOURS),
        "--ready-file",
        str(PRODUCER_READY),
    ]
    process = airflow_local.start(command, env, PRODUCER_LOG, PRODUCER_PID)
    say(f"producer: started (pid {process.pid}), log {stack.shown(PRODUCER_LOG)}")


def wait_for_api(process: subprocess.Popen | None = None, timeout: float = 300) -> None:
    """Until the public API and the execution API (what task processes call) both answer."""
    log = log_file("api-server")
    for what, path in (("the api-server", "/api/v2/version"), ("the execution API", "/execution/health")):
        airflow_local.wait_until(
            lambda path=path: airflow_local.http_status(BASE_URL + path) == 200,
            f"{what} ({BASE_URL}{path})",
            timeout,
            process,
            log,
        )


def wait_for_dags(token: str, dag_ids: list[str], timeout: float = 240) -> None:
    def parsed() -> bool:
        found = airflow_local.api_call(BASE_URL, token, "GET", "/api/v2/dags?limit=1000&tags=firehose-loader")
        return set(dag_ids) <= {dag["dag_id"] for dag in found.get("dags", [])}

    airflow_local.wait_until(
        parsed, f"the DAGs {', '.join(dag_ids)} to be parsed", timeout, log=log_file("dag-processor")
    )


def quoted(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def dag_runs(token: str, dag_id: str, *states: str) -> list[dict]:
    query = "".join(f"&state={state}" for state in states)
    found = airflow_local.api_call(BASE_URL, token, "GET", f"/api/v2/dags/{quoted(dag_id)}/dagRuns?limit=1000{query}")
    return found.get("dag_runs", [])


def delete_foreign_dags(token: str, wanted: set[str]) -> list[str]:
    """Delete every DAG (runs, task instances, serialized DAG) that the streams file does not declare.

    A DAG with task instances still marked running (their processes died with the previous start)
    cannot be deleted: its unfinished runs are marked failed first.
    """
    found = airflow_local.api_call(BASE_URL, token, "GET", "/api/v2/dags?limit=1000&exclude_stale=false")
    foreign = sorted({dag["dag_id"] for dag in found.get("dags", [])} - wanted)
    for dag_id in foreign:
        for run in dag_runs(token, dag_id, "queued", "running"):
            airflow_local.api_call(
                BASE_URL,
                token,
                "PATCH",
                f"/api/v2/dags/{quoted(dag_id)}/dagRuns/{quoted(run['dag_run_id'])}",
                {"state": "failed"},
            )
        airflow_local.api_call(BASE_URL, token, "DELETE", f"/api/v2/dags/{quoted(dag_id)}")
        say(f"airflow: deleted {dag_id}, which is not in the streams file ({load_config_path()})")
    return foreign


def load_config_path() -> str:
    from firehose_loader.config import streams_file

    return stack.shown(streams_file().resolve())


def existing_dags(token: str) -> set[str]:
    found = airflow_local.api_call(BASE_URL, token, "GET", "/api/v2/dags?limit=1000&exclude_stale=false")
    return {dag["dag_id"] for dag in found.get("dags", [])}


def pause(token: str, dag_ids: list[str]) -> None:
    for dag_id in sorted(set(dag_ids) & existing_dags(token)):
        airflow_local.api_call(BASE_URL, token, "PATCH", f"/api/v2/dags/{quoted(dag_id)}", {"is_paused": True})


def replace_unfinished_backfills(token: str, dag_ids: list[str], now: datetime) -> set[str]:
    """Deal with the backfills the previous start left unfinished; returns the DAGs whose backfill goes on.

    A backfill of the same hours as this start's goes on (the scheduler resumes it). One of other
    hours (an hour has passed) is cancelled: its queued runs become failed, and the new backfill,
    which reprocesses failed runs, takes them over; its running runs go on.
    """
    first, last = backfill_window(now)
    kept = set()
    for dag_id in sorted(set(dag_ids) & existing_dags(token)):
        found = airflow_local.api_call(BASE_URL, token, "GET", f"/api/v2/backfills?dag_id={quoted(dag_id)}&limit=1000")
        for backfill in found.get("backfills", []):
            if backfill.get("completed_at"):
                continue
            window = (datetime.fromisoformat(backfill["from_date"]), datetime.fromisoformat(backfill["to_date"]))
            if window == (first, last):
                kept.add(dag_id)
                say(f"airflow: the unfinished backfill {backfill['id']} of {dag_id} goes on")
                continue
            airflow_local.api_call(BASE_URL, token, "PUT", f"/api/v2/backfills/{backfill['id']}/cancel")
            say(f"airflow: replaced the unfinished backfill {backfill['id']} of {dag_id} (a new one follows)")
    return kept


def clear_failed_runs(token: str, dag_ids: list[str], now: datetime, leave_to_backfill: set[str]) -> list[str]:
    """Clear the failed runs of the hours the producer writes: the scheduler runs them again.

    Those hours are written again on every start, so a run of them that failed, failed because a
    component was not there (an api-server not yet up, a task stopped by `make down`). The runs of
    ``leave_to_backfill`` (the ingest DAGs that get a new backfill) inside the backfill's window
    are left to it: it reprocesses failed runs. Older failed runs stay as they are (``make status`` lists them).
    """
    first, last = backfill_window(now)
    cleared = []
    for dag_id in sorted(set(dag_ids) & existing_dags(token)):
        for run in dag_runs(token, dag_id, "failed"):
            logical = run.get("logical_date") or run.get("data_interval_start")
            if logical is None or datetime.fromisoformat(logical) < first:
                continue
            if dag_id in leave_to_backfill and datetime.fromisoformat(logical) <= last:
                continue
            airflow_local.api_call(
                BASE_URL,
                token,
                "POST",
                f"/api/v2/dags/{quoted(dag_id)}/clearTaskInstances",
                {"dry_run": False, "dag_run_id": run["dag_run_id"], "only_failed": True, "reset_dag_runs": True},
            )
            cleared.append(f"{dag_id} {run['dag_run_id']}")
    for item in cleared:
        say(f"airflow: cleared the failed run {item}; it runs again")
    return cleared


def backfill_window(now: datetime) -> tuple[datetime, datetime]:
    """The first and last logical date (= data interval start) of the hours to backfill.

    The producer wrote the ``BACKFILL_HOURS`` complete hours before the current one. The latest
    of them is the scheduler's own run (with catchup false it runs the latest complete interval
    as soon as the DAG is unpaused), so the backfill takes the ones before it.
    """
    latest = hour_start(now) - HOUR
    return latest - (BACKFILL_HOURS - 1) * HOUR, latest - HOUR


def create_backfills(token: str) -> list[str]:
    """A backfill per ingest DAG of the hours before the latest one; failed runs among them run again."""
    start, end = backfill_window(datetime.now(UTC))
    created = []
    for dag_id in streams_dag_ids()[0]:
        try:
            airflow_local.api_call(
                BASE_URL,
                token,
                "POST",
                "/api/v2/backfills",
                {
                    "dag_id": dag_id,
                    "from_date": start.isoformat(),
                    "to_date": end.isoformat(),
                    "max_active_runs": 3,
                    "reprocess_behavior": "failed",
                },
            )
            created.append(dag_id)
            say(
                f"backfill: {dag_id} for the hours {start:%Y-%m-%d %H}:00 to {end:%H}:00 UTC"
                f" (like `airflow backfill create --dag-id {dag_id} --from-date {start.isoformat()}"
                f" --to-date {end.isoformat()} --reprocess-behavior failed`)"
            )
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            if error.code == 409:
                say(f"backfill: {dag_id} goes on with its unfinished backfill")
            else:
                say(f"backfill: {dag_id} not created ({error.code}: {detail})")
    return created


def release_audits_later(env: dict[str, str]) -> None:
    if running(RELEASE_PID):
        return
    command = [str(airflow_local.VENV_BIN / "python"), "-m", "tools.up", "release-audits"]
    airflow_local.start(command, env, RELEASE_LOG, RELEASE_PID)


def ingest_busy(token: str, dag_ids: list[str]) -> list[str]:
    """What still keeps the ingest DAGs busy: unfinished backfills and queued or running runs."""
    busy = []
    for dag_id in dag_ids:
        backfills = airflow_local.api_call(BASE_URL, token, "GET", f"/api/v2/backfills?dag_id={dag_id}&limit=100")
        busy += [
            f"backfill {item['id']} of {dag_id}"
            for item in backfills.get("backfills", [])
            if not item.get("completed_at")
        ]
        runs = airflow_local.api_call(
            BASE_URL, token, "GET", f"/api/v2/dags/{dag_id}/dagRuns?state=queued&state=running&limit=100"
        )
        busy += [f"run {item['dag_run_id']} of {dag_id}" for item in runs.get("dag_runs", [])]
    return busy


def release_audits(timeout: float = 3600) -> None:
    """(helper process) Once the ingest DAGs have loaded the backfilled hours, unpause the audit DAGs."""
    password = airflow_local.ensure_password(AIRFLOW_HOME)
    ingest_ids, audit_ids = streams_dag_ids()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(10)
        try:
            busy = ingest_busy(airflow_local.api_token(BASE_URL, password), ingest_ids)
        except OSError as error:
            print(f"waiting for the api-server: {error}", flush=True)
            continue
        if not busy:
            break
        print(f"waiting for {', '.join(busy)}", flush=True)
    # The producer damages a loaded hour within one of its passes; give it that time before the first audit.
    time.sleep(20)
    token = airflow_local.api_token(BASE_URL, password)
    for dag_id in audit_ids:
        airflow_local.api_call(BASE_URL, token, "PATCH", f"/api/v2/dags/{quoted(dag_id)}", {"is_paused": False})
        print(f"unpaused {dag_id}", flush=True)


def start_component(component: str, env: dict[str, str]) -> subprocess.Popen:
    process = airflow_local.start(
        [str(airflow_local.VENV_BIN / "airflow"), component], env, log_file(component), pid_file(component)
    )
    say(f"airflow: {component} started (pid {process.pid}), log {stack.shown(log_file(component))}")
    return process


def start_airflow(env: dict[str, str], password: str) -> None:
    """Migrate, start the api-server, tidy the metadata database through it, then start the rest."""
    if airflow_local.port_in_use(PORT):
        raise SystemExit(
            f"port {PORT} is taken by another program; stop it or choose another port with FIREHOSE_AIRFLOW_PORT"
        )
    say(f"airflow: migrating the metadata database {stack.UI_DATABASE} (AIRFLOW_HOME={stack.shown(AIRFLOW_HOME)})")
    airflow_local.run_airflow(["db", "migrate"], env, log_file("db-migrate"), timeout=600)
    api_server = start_component("api-server", env)
    say(f"airflow: waiting for {BASE_URL} and its execution API before anything can run a task ...")
    wait_for_api(api_server)
    token = airflow_local.api_token(BASE_URL, password)
    ingest_ids, audit_ids = streams_dag_ids()
    delete_foreign_dags(token, set(ingest_ids + audit_ids + microbatch_dag_ids()))
    # The audit DAGs wait for the first loads (release_audits); new ones are created paused anyway.
    pause(token, audit_ids)
    now = datetime.now(UTC)
    kept = replace_unfinished_backfills(token, ingest_ids, now)
    clear_failed_runs(token, ingest_ids + audit_ids, now, set(ingest_ids) - kept)
    for component in COMPONENTS[1:]:
        start_component(component, env)


def up() -> None:
    began = time.monotonic()
    UP.mkdir(parents=True, exist_ok=True)
    stack.up(migrate=False)
    password = airflow_local.ensure_password(AIRFLOW_HOME)
    env = environment()
    if PRODUCER:
        start_producer(env)
    else:
        say("producer: not started (FIREHOSE_PRODUCER=0)")
    ingest_ids, audit_ids = streams_dag_ids()
    microbatch_ids = microbatch_dag_ids()
    states = {component: running(pid_file(component)) for component in COMPONENTS}
    started = not all(states.values())
    if started:
        if any(states.values()):
            say("airflow: only some components run; stopping them to start all in order")
            stop_airflow()
        start_airflow(env, password)
    else:
        say(
            "airflow: already running (" + ", ".join(f"{c} {pid_file(c).read_text().strip()}" for c in COMPONENTS) + ")"
        )
        wait_for_api()
    audits_paused = False
    if started:
        token = airflow_local.api_token(BASE_URL, password)
        wait_for_dags(token, ingest_ids + audit_ids + microbatch_ids)
        for dag_id in ingest_ids + microbatch_ids:
            airflow_local.api_call(BASE_URL, token, "PATCH", f"/api/v2/dags/{quoted(dag_id)}", {"is_paused": False})
        if PRODUCER:
            airflow_local.wait_until(PRODUCER_READY.exists, "the producer's first pass", 120, log=PRODUCER_LOG)
        create_backfills(token)
        audits_paused = any(
            airflow_local.api_call(BASE_URL, token, "GET", f"/api/v2/dags/{quoted(dag_id)}").get("is_paused")
            for dag_id in audit_ids
        )
        if audits_paused:
            release_audits_later(env)
    say(
        f"""
Airflow 3 is up ({time.monotonic() - began:.0f} s): {BASE_URL}
  log in as {airflow_local.ADMIN} / {password}   (the password is in {stack.shown(airflow_local.password_file(AIRFLOW_HOME))})
  the audit dashboard: {BASE_URL}/firehose/  (also "Firehose audit" in the UI's navigation)
  the streams: {load_config_path()} ({", ".join(ingest_ids + microbatch_ids)})

What runs: the local stack (S3 API + PostgreSQL), Airflow's api-server, scheduler, dag-processor and triggerer,
{f"and a simulated Firehose producer that writes the {PRODUCER_STREAM} stream's hours and damages loaded hours like a lossy real-time path." if PRODUCER else "and no producer (FIREHOSE_PRODUCER=0)."}
{f"Micro-batches ({', '.join(microbatch_ids)}) merge each new object within a minute or so; the ingest settles each hour." if microbatch_ids else ""}
{f"The scheduler and a backfill are loading the last {BACKFILL_HOURS} hours; the audit DAGs are unpaused once they are done (a few minutes)." if audits_paused else ""}
Logs: {stack.shown(UP)}/<component>.log, producer.log.   Failed runs: make status.   Stop everything: make down
"""
    )


def stop(path: Path, name: str, first_signal: int = signal.SIGTERM, grace: float = 20.0) -> list[int]:
    if not path.exists():
        return []
    try:
        pid = int(path.read_text().split()[0])
    except (ValueError, IndexError):
        path.unlink()
        return []
    tree = airflow_local.process_tree(pid)
    if tree:
        say(f"stopping {name} (pid {pid}, {len(tree)} processes)")
        airflow_local.stop_tree(pid, first_signal, grace)
    path.unlink(missing_ok=True)
    return tree


def stop_airflow() -> list[int]:
    """The scheduler first (nothing new starts; its task processes go with it), the api-server last."""
    known: list[int] = []
    for component in ("scheduler", "triggerer", "dag-processor", "api-server"):
        known += stop(pid_file(component), f"the {component}", grace=40 if component == "scheduler" else 20)
    return known


def down() -> None:
    known: list[int] = []
    known += stop(RELEASE_PID, "the audit release helper", grace=5)
    known += stop(PRODUCER_PID, "the producer", grace=10)
    known += stop_airflow()
    PRODUCER_READY.unlink(missing_ok=True)
    pg_pid = moto_pid = None
    if (stack.PGDATA / "postmaster.pid").exists():
        pg_pid = int((stack.PGDATA / "postmaster.pid").read_text().split()[0])
    if stack.MOTO_PID.exists():
        moto_pid = int(stack.MOTO_PID.read_text().split()[0])
    known += [pid for pid in (pg_pid, moto_pid) if pid]
    stack.down()
    time.sleep(0.5)
    left = [pid for pid in known if airflow_local.alive(pid)]
    if left:
        listing = subprocess.run(
            ["ps", "-o", "pid,ppid,etime,cmd", "-p", ",".join(map(str, left))], capture_output=True, text=True
        ).stdout
        raise SystemExit(f"still running after make down:\n{listing}")
    say(f"nothing left running ({len(known)} processes stopped: Airflow, producer, S3 API, PostgreSQL)")


def task_log_error(token: str, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int) -> str:
    """The error a task's log ends with, or why there is no log."""
    if try_number < 1:
        return "it never started"
    path = (
        f"/api/v2/dags/{quoted(dag_id)}/dagRuns/{quoted(run_id)}/taskInstances/{quoted(task_id)}/logs/{try_number}"
        f"?full_content=true&map_index={map_index}"
    )
    request = urllib.request.Request(
        BASE_URL + path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            content = json.loads(response.read()).get("content", [])
    except (OSError, ValueError):
        return "no task log"
    return error_in_log(content)


def error_in_log(content) -> str:
    """The last exception (type: message) of a structured task log, else its last error event."""
    message = ""
    for event in content if isinstance(content, list) else []:
        if not isinstance(event, dict):
            continue
        for detail in event.get("error_detail") or []:
            if isinstance(detail, dict) and detail.get("exc_type"):
                message = f"{detail['exc_type']}: {detail.get('exc_value', '')}"
        if not message and str(event.get("level", "")).lower() in ("error", "critical"):
            message = str(event.get("event", ""))
    if not message:
        # The task process never reached its own log: the executor or the supervisor failed it.
        return "no error in the task log (the task process did not run; see the scheduler's log)"
    return " ".join(message.split())[:240]


def failed_runs(token: str) -> list[str]:
    """One line per failed run: the DAG, the hour, the run, which task failed and why."""
    lines = []
    found = airflow_local.api_call(BASE_URL, token, "GET", "/api/v2/dags/~/dagRuns?state=failed&limit=1000")
    for run in sorted(found.get("dag_runs", []), key=lambda item: (item["dag_id"], item.get("logical_date") or "")):
        dag_id, run_id = run["dag_id"], run["dag_run_id"]
        tis = airflow_local.api_call(
            BASE_URL, token, "GET", f"/api/v2/dags/{quoted(dag_id)}/dagRuns/{quoted(run_id)}/taskInstances?limit=1000"
        ).get("task_instances", [])
        failed = [ti for ti in tis if ti.get("state") == "failed"]
        if failed:
            ti = failed[0]
            why = task_log_error(token, dag_id, run_id, ti["task_id"], ti.get("try_number", 0), ti.get("map_index", -1))
            reason = f"{ti['task_id']} failed (try {ti.get('try_number', 0)}): {why}"
            if len(failed) > 1:
                reason += f" (+{len(failed) - 1} more failed tasks)"
        else:
            reason = "the run was marked failed without a failed task (stopped, cancelled or timed out)"
        hour = (run.get("logical_date") or run.get("data_interval_start") or "")[:16].replace("T", " ")
        lines.append(f"{dag_id} {hour} ({run_id}): {reason}")
    return lines


def status() -> None:
    for name, path in [(c, pid_file(c)) for c in COMPONENTS] + [
        ("producer", PRODUCER_PID),
        ("release-audits", RELEASE_PID),
    ]:
        say(f"{name}: {'running' if running(path) else 'stopped'}")
    answers = airflow_local.http_status(BASE_URL + "/api/v2/version") == 200
    say(f"{BASE_URL}: {'answers' if answers else 'down'}")
    stack.status()
    if not answers:
        return
    lines = failed_runs(airflow_local.api_token(BASE_URL, airflow_local.ensure_password(AIRFLOW_HOME)))
    say(f"failed runs: {len(lines) or 'none'}")
    for line in lines:
        say(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "release-audits"))
    args = parser.parse_args()
    if args.command == "release-audits":
        release_audits()
    else:
        use_streams_file(write=args.command == "up")
    {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    main()
