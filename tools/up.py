"""`make up` / `make down`: the local stack, Airflow 3 and a simulated Firehose producer, in the background.

``up`` (idempotent):

1. starts the local stack (tools/stack.py: moto S3 + PostgreSQL, Airflow's metadata database);
2. starts ``tools/producer.py``: the example stream's hours of the last few hours and the current
   one, a lossy real-time path that damages loaded hours, and a late object now and then;
3. starts ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor,
   parallelism 4, one api-server worker) on http://localhost:8080 with the simple auth manager's
   user ``admin`` (password ``admin``, kept in ``.local/airflow/simple_auth_manager_passwords.json``);
4. once the UI answers and the DAGs are parsed: unpauses every ``ingest_<stream>`` DAG (the
   streams file says ``catchup: false``, so the scheduler runs the latest complete hour) and
   creates a **backfill** of the hours before it that the producer wrote, as
   ``airflow backfill create`` would. ``audit_<stream>`` stays paused until those runs are done
   (a small helper process waits for them), so its first run audits loaded hours and finds what
   the real-time path broke, instead of auditing hours that are not loaded yet;
5. prints the URL and the login.

``down`` stops the helper, the producer, Airflow (all its processes, task processes included)
and the stack, then checks that none of the processes it knew about still runs.

Everything it starts is recorded under ``.local/up/`` (pid files and logs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))

from firehose_loader.config import load_config  # noqa: E402
from firehose_loader.layout import HOUR, hour_start  # noqa: E402
from tools import airflow_local, stack  # noqa: E402

UP = stack.LOCAL / "up"
AIRFLOW_PID = UP / "airflow.pid"
AIRFLOW_LOG = UP / "airflow.log"
PRODUCER_PID = UP / "producer.pid"
PRODUCER_LOG = UP / "producer.log"
PRODUCER_READY = UP / "producer.ready"
RELEASE_PID = UP / "release-audits.pid"
RELEASE_LOG = UP / "release-audits.log"
PORT = int(os.environ.get("FIREHOSE_AIRFLOW_PORT", "8080"))
BASE_URL = f"http://localhost:{PORT}"
BACKFILL_HOURS = int(os.environ.get("FIREHOSE_PRODUCER_HOURS", "6"))
PRODUCER_STREAM = os.environ.get("FIREHOSE_PRODUCER_STREAM", "events")


def say(message: str) -> None:
    print(message, flush=True)


def environment() -> dict[str, str]:
    """The stack's environment (AIRFLOW_HOME=.local/airflow, the "airflow" database) plus what standalone needs."""
    return airflow_local.airflow_environment(
        stack.AIRFLOW_HOME,
        PORT,
        # New DAGs start paused: `up` unpauses the ingest DAGs itself and the audit DAGs after the backfill.
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        PYTHONUNBUFFERED="1",
    )


def running(pid_file: Path) -> bool:
    try:
        return airflow_local.alive(int(pid_file.read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return False


def start_producer(env: dict[str, str]) -> None:
    if running(PRODUCER_PID):
        say(f"producer: already running (pid {PRODUCER_PID.read_text().strip()})")
        return
    PRODUCER_READY.unlink(missing_ok=True)
    command = [
        str(airflow_local.VENV_BIN / "python"),
        str(ROOT / "tools" / "producer.py"),
        "--stream",
        PRODUCER_STREAM,
        "--hours",
        str(BACKFILL_HOURS),
        "--ready-file",
        str(PRODUCER_READY),
    ]
    process = airflow_local.start(command, env, PRODUCER_LOG, PRODUCER_PID)
    say(f"producer: started (pid {process.pid}), log {PRODUCER_LOG.relative_to(ROOT)}")


def pause_audits(env: dict[str, str]) -> None:
    """Pause the audit DAGs before the scheduler starts (they exist in the database after a first `make up`)."""
    dag_ids = [stream.audit_dag_id for stream in load_config().streams]
    pattern = "^(" + "|".join(dag_ids) + ")$"
    # On a fresh database there is no DAG to pause yet (the command fails): they will be created paused.
    with contextlib.suppress(RuntimeError):
        airflow_local.run_airflow(
            ["dags", "pause", "--treat-dag-id-as-regex", "--yes", pattern], env, UP / "pause.log", timeout=180
        )


def wait_for_dags(token: str, dag_ids: list[str], timeout: float = 240) -> None:
    def parsed() -> bool:
        found = airflow_local.api_call(BASE_URL, token, "GET", "/api/v2/dags?limit=1000&tags=firehose-loader")
        return set(dag_ids) <= {dag["dag_id"] for dag in found.get("dags", [])}

    airflow_local.wait_until(parsed, f"the DAGs {', '.join(dag_ids)} to be parsed", timeout, log=AIRFLOW_LOG)


def backfill_window(now: datetime) -> tuple[datetime, datetime]:
    """The first and last logical date (= data interval start) of the hours to backfill.

    The producer wrote the ``BACKFILL_HOURS`` complete hours before the current one. The latest
    of them is the scheduler's own run (with catchup false it runs the latest complete interval
    as soon as the DAG is unpaused), so the backfill takes the ones before it.
    """
    latest = hour_start(now) - HOUR
    return latest - (BACKFILL_HOURS - 1) * HOUR, latest - HOUR


def create_backfills(token: str) -> list[str]:
    start, end = backfill_window(datetime.now(UTC))
    created = []
    for stream in load_config().streams:
        try:
            airflow_local.api_call(
                BASE_URL,
                token,
                "POST",
                "/api/v2/backfills",
                {
                    "dag_id": stream.ingest_dag_id,
                    "from_date": start.isoformat(),
                    "to_date": end.isoformat(),
                    "max_active_runs": 3,
                    "reprocess_behavior": "none",
                },
            )
            created.append(stream.ingest_dag_id)
            say(
                f"backfill: {stream.ingest_dag_id} for the hours {start:%Y-%m-%d %H}:00 to {end:%H}:00 UTC"
                f" (like `airflow backfill create --dag-id {stream.ingest_dag_id} --from-date {start.isoformat()}"
                f" --to-date {end.isoformat()}`)"
            )
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            say(f"backfill: {stream.ingest_dag_id} not created ({error.code}: {detail})")
    return created


def release_audits_later(env: dict[str, str]) -> None:
    if running(RELEASE_PID):
        return
    command = [str(airflow_local.VENV_BIN / "python"), str(Path(__file__)), "release-audits"]
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
    password = airflow_local.ensure_password(stack.AIRFLOW_HOME)
    ingest_ids = [stream.ingest_dag_id for stream in load_config().streams]
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
    for stream in load_config().streams:
        airflow_local.api_call(BASE_URL, token, "PATCH", f"/api/v2/dags/{stream.audit_dag_id}", {"is_paused": False})
        print(f"unpaused {stream.audit_dag_id}", flush=True)


def up() -> None:
    UP.mkdir(parents=True, exist_ok=True)
    stack.up()
    password = airflow_local.ensure_password(stack.AIRFLOW_HOME)
    env = environment()
    start_producer(env)
    config = load_config()
    ingest_ids = [stream.ingest_dag_id for stream in config.streams]
    started = not running(AIRFLOW_PID)
    if started:
        if airflow_local.port_in_use(PORT):
            raise SystemExit(
                f"port {PORT} is taken by another program; stop it or choose another port with FIREHOSE_AIRFLOW_PORT"
            )
        say("airflow: pausing the audit DAGs until the first loads are done")
        pause_audits(env)
        process = airflow_local.start(
            [str(airflow_local.VENV_BIN / "airflow"), "standalone"], env, AIRFLOW_LOG, AIRFLOW_PID
        )
        say(f"airflow: standalone started (pid {process.pid}), log {AIRFLOW_LOG.relative_to(ROOT)}")
    else:
        say(f"airflow: already running (pid {AIRFLOW_PID.read_text().strip()})")
    say(f"airflow: waiting for {BASE_URL} ...")
    airflow_local.wait_until(
        lambda: airflow_local.http_status(f"{BASE_URL}/api/v2/version") == 200, BASE_URL, 300, log=AIRFLOW_LOG
    )
    audits_paused = False
    if started:
        token = airflow_local.api_token(BASE_URL, password)
        wait_for_dags(token, ingest_ids + [stream.audit_dag_id for stream in config.streams])
        for dag_id in ingest_ids:
            airflow_local.api_call(BASE_URL, token, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        airflow_local.wait_until(PRODUCER_READY.exists, "the producer's first pass", 120, log=PRODUCER_LOG)
        create_backfills(token)
        audits_paused = any(
            airflow_local.api_call(BASE_URL, token, "GET", f"/api/v2/dags/{stream.audit_dag_id}").get("is_paused")
            for stream in config.streams
        )
        if audits_paused:
            release_audits_later(env)
    say(
        f"""
Airflow 3 is up: {BASE_URL}
  log in as {airflow_local.ADMIN} / {password}   (the password is in {airflow_local.password_file(stack.AIRFLOW_HOME).relative_to(ROOT)})
  the audit dashboard: {BASE_URL}/firehose/  (also "Firehose audit" in the UI's navigation)

What runs: the local stack (S3 API + PostgreSQL), airflow standalone, and a simulated Firehose
producer that writes the {PRODUCER_STREAM} stream's hours and damages loaded hours like a lossy real-time path.
{f"The scheduler and a backfill are loading the last {BACKFILL_HOURS} hours; the audit DAGs are unpaused once they are done (a few minutes)." if audits_paused else ""}
Logs: {UP.relative_to(ROOT)}/airflow.log, producer.log.   Stop everything: make down
"""
    )


def stop(pid_file: Path, name: str, first_signal: int = signal.SIGTERM, grace: float = 20.0) -> list[int]:
    if not pid_file.exists():
        return []
    try:
        pid = int(pid_file.read_text().split()[0])
    except (ValueError, IndexError):
        pid_file.unlink()
        return []
    tree = airflow_local.process_tree(pid)
    if tree:
        say(f"stopping {name} (pid {pid}, {len(tree)} processes)")
        airflow_local.stop_tree(pid, first_signal, grace)
    pid_file.unlink(missing_ok=True)
    return tree


def down() -> None:
    known: list[int] = []
    known += stop(RELEASE_PID, "the audit release helper", grace=5)
    known += stop(PRODUCER_PID, "the producer", grace=10)
    # standalone stops its components on SIGINT (its Ctrl-C path), then everything left gets SIGTERM, then SIGKILL.
    known += stop(AIRFLOW_PID, "airflow standalone", first_signal=signal.SIGINT, grace=40)
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


def status() -> None:
    for name, pid_file in (("airflow", AIRFLOW_PID), ("producer", PRODUCER_PID), ("release-audits", RELEASE_PID)):
        say(f"{name}: {'running' if running(pid_file) else 'stopped'}")
    say(f"{BASE_URL}: {'answers' if airflow_local.http_status(BASE_URL + '/api/v2/version') == 200 else 'down'}")
    stack.status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "release-audits"))
    args = parser.parse_args()
    if args.command == "release-audits":
        release_audits()
    else:
        {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    main()
