"""A failure at each step of an hourly load, and a task process killed in the middle of the merge.

Each case loads hour 0 cleanly, then runs the DAG for hour 1 with one step failing on the
task's first try, and checks:

- between the failed try and its retry (the task's on_retry_callback), the target and the
  ledger are exactly as before the run (as after success when the failure comes after the
  commit);
- Airflow's retry of the failed task (same DAG run, same XCom manifest) ends exactly where a
  clean run ends: the same target, byte for byte, and the same ledger;
- a clear and rerun of the whole run ends there too (its ledger says it found every row
  already there, which is the only difference the README documents).

The clean run is a stream of its own fed with the same objects (``reference``).
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from firehose_loader import faults
from tests.integration.conftest import run_hour
from tests.integration.support import (
    POISON_KEY,
    SIMPLE,
    Snapshot,
    backend_alive,
    load_in_process,
    run_hour_with_retries,
    snapshot,
    start_worker,
    target_locks,
    task_tries,
    unlisted_stream,
    wait_for,
    write_two_hours,
)

FIRST = datetime(2026, 5, 1, 0, tzinfo=UTC)
SECOND = FIRST + timedelta(hours=1)


@pytest.fixture(autouse=True)
def fresh_failpoints():
    faults.reset()
    yield
    faults.reset()


@pytest.fixture(scope="module")
def reference(s3, warehouse):
    """The two hours loaded once each, with no failure: what every case must end as."""
    entry, _stream = unlisted_stream(s3, "rel_reference", **SIMPLE)
    write_two_hours(s3, entry["bucket"], FIRST)
    load_in_process(entry, FIRST, "reference_0")
    load_in_process(entry, SECOND, "reference_1")
    return snapshot(warehouse, entry)


def poison_trigger(warehouse: psycopg.Connection, table: str) -> sql.Composable:
    """A trigger that raises inside the merge on the insert of one row, the first time only.

    A sequence is the fuse: nextval is not rolled back with the failed transaction, so the
    next attempt passes. Returns the fuse's name so the test can re-arm it.
    """
    schema, name = table.split(".")
    fuse = sql.Identifier(schema, "poison_fuse")
    function = sql.Identifier(schema, "poison_row")
    warehouse.execute(sql.SQL("CREATE SEQUENCE {}").format(fuse))
    warehouse.execute(
        sql.SQL(
            "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.id = {poison} AND nextval({fuse_text}) = 1 THEN"
            "  RAISE EXCEPTION 'refusing row %', NEW.id;"
            " END IF; RETURN NEW; END $$"
        ).format(
            function=function,
            poison=sql.Literal(POISON_KEY),
            fuse_text=sql.Literal(f"{schema}.poison_fuse"),
        )
    )
    warehouse.execute(
        sql.SQL("CREATE TRIGGER poison BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier(schema, name), function
        )
    )
    return fuse


STEPS = [
    pytest.param("after_stage", "extract_hour", id="after-stage"),
    pytest.param("after_copy", "load_and_merge", id="after-copy"),
    pytest.param("inside_merge", "load_and_merge", id="inside-merge-trigger"),
    pytest.param("after_commit", "load_and_merge", id="after-commit"),
]


@pytest.mark.parametrize(("step", "task_id"), STEPS)
def test_failure_at_each_step_leaves_the_warehouse_exact_and_retry_and_rerun_end_as_a_clean_run(
    step, task_id, reference, streams, s3, warehouse
):
    entry = streams.declare(s3, f"rel_fail_{step}", **SIMPLE)
    write_two_hours(s3, entry["bucket"], FIRST)
    load_in_process(entry, FIRST, "setup")
    before = snapshot(warehouse, entry)

    # The step fails on the first try; Airflow's retry of that task (same run, same XCom manifest)
    # passes. The state between the two tries is taken by the task's on_retry_callback.
    if step == "inside_merge":
        fuse = poison_trigger(warehouse, entry["table"])
        env = {}
    else:
        fuse = None
        env = {"FIREHOSE_LOADER_FAILPOINTS": f"{step}:once"}
    between: list[Snapshot] = []
    run = run_hour_with_retries(
        entry["name"],
        SECOND,
        {task_id: 1},
        env=env,
        on_retry=lambda context: between.append(snapshot(warehouse, entry)),
    )
    assert run.state == "success"
    assert task_tries(run)[task_id] == ("success", 2)
    assert len(between) == 1
    if step == "after_commit":
        # The transaction committed before the failure: the hour is loaded exactly as by a clean run,
        # and the retry merges the same stage again without changing a row.
        assert between[0] == reference
        assert snapshot(warehouse, entry).accounting() == reference.accounting()
    else:
        assert between[0] == before
        assert snapshot(warehouse, entry) == reference
    if fuse is not None:
        assert warehouse.execute(sql.SQL("SELECT last_value FROM {}").format(fuse)).fetchone()[0] == 2
    if step == "after_stage":  # each try wrote its stage before the failure; only the last one was merged
        listed = s3.list_objects_v2(Bucket=entry["bucket"], Prefix=f"firehose-loader/staging/{entry['name']}/")
        stages = [item["Key"] for item in listed["Contents"] if not item["Key"].endswith(".keys.parquet")]
        assert len(stages) == 3  # hour 0's, and one per try of this run: each try stages under its own key
        assert listed["KeyCount"] == 6  # each beside its key file

    # A clear of the whole run re-extracts and re-merges: nothing changes.
    rerun = run_hour(entry["name"], SECOND)
    assert rerun.state == "success"
    after = snapshot(warehouse, entry)
    assert after.accounting() == reference.accounting()
    assert after.load_hours[-1][9:11] == (0, 0)  # nothing inserted or updated by the rerun


def test_task_killed_with_sigkill_in_the_middle_of_the_merge_changes_nothing_and_a_rerun_completes(
    reference, streams, s3, warehouse, tmp_path
):
    entry = streams.declare(s3, "rel_sigkill", **SIMPLE)
    write_two_hours(s3, entry["bucket"], FIRST)
    load_in_process(entry, FIRST, "setup")
    before = snapshot(warehouse, entry)

    # A separate process runs the load task's code and stops inside its open transaction.
    log = tmp_path / "worker.log"
    process = start_worker(
        entry,
        SECOND,
        "scheduled__killed",
        log,
        FIREHOSE_LOADER_FAILPOINTS="before_commit:pause",
        FIREHOSE_LOADER_PAUSE_SECONDS="300",
    )

    def holding_the_lock() -> list[int]:
        if process.poll() is not None:
            pytest.fail(f"the load exited early:\n{log.read_text()[-3000:]}")
        return [
            pid
            for pid, mode, granted, state in target_locks(warehouse, entry["table"])
            if granted and mode == "ShareRowExclusiveLock" and state == "idle in transaction"
        ]

    try:
        holders = wait_for(holding_the_lock, "the load to hold the table lock in an open transaction", timeout=120)
        # The transaction is idle (and holds the lock) a moment before the failpoint writes its line.
        paused = f"failpoint before_commit: paused (pid {process.pid})"
        wait_for(lambda: paused in log.read_text(), "the failpoint to report the pause", timeout=30)
        assert snapshot(warehouse, entry) == before  # the merge is done but not visible before the commit
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    # The server notices the dead client, rolls its transaction back and releases the lock.
    wait_for(lambda: not any(backend_alive(warehouse, pid) for pid in holders), "the killed backend to go away")
    assert target_locks(warehouse, entry["table"]) == []
    assert snapshot(warehouse, entry) == before

    rerun = run_hour(entry["name"], SECOND)
    assert rerun.state == "success"
    assert snapshot(warehouse, entry) == reference
