"""Named points where tests can make a run fail (or stall) on purpose.

``FIREHOSE_LOADER_FAILPOINTS`` is a comma-separated list of ``name[:action]``; unset (always,
in production) every point does nothing. The points, in the order a run reaches them:

- ``after_stage``: extract wrote the stage and quarantine files; the task has not returned.
- ``after_copy``: load COPYed the stage into the staging table; the merge has not started.
- ``before_commit``: load wrote the merge and the ledger rows; the transaction is still open
  (it holds the target's lock).
- ``after_commit``: load committed; the task has not recorded its success.

Actions:

``raise`` (the default)
    raise :class:`InjectedFault` every time the point is reached.
``once``
    raise the first time the point is reached in this process, then pass: an Airflow retry
    that runs in the same process (``dag.test`` runs tasks in-process) then succeeds.
    :func:`reset` forgets what has fired.
``pause``
    write ``failpoint <name>: paused (pid <pid>)`` to stderr and sleep, holding whatever the
    run holds (an open transaction, the table lock), until the process is killed; after
    ``FIREHOSE_LOADER_PAUSE_SECONDS`` (default 600) it raises, so a forgotten pause cannot
    hang a test run for ever.

``FIREHOSE_LOADER_FAILPOINTS=after_copy:once,before_commit:pause`` arms two points.
An unknown action raises ``ValueError``, so a typo cannot make a test pass vacuously.
"""

from __future__ import annotations

import os
import sys
import time

FAILPOINTS_VARIABLE = "FIREHOSE_LOADER_FAILPOINTS"
PAUSE_SECONDS_VARIABLE = "FIREHOSE_LOADER_PAUSE_SECONDS"
DEFAULT_PAUSE_SECONDS = 600.0

_fired: set[str] = set()


class InjectedFault(RuntimeError):
    pass


def armed() -> dict[str, str]:
    """The armed points and their actions, from the environment."""
    points: dict[str, str] = {}
    for item in os.environ.get(FAILPOINTS_VARIABLE, "").split(","):
        name, _, action = item.strip().partition(":")
        if name:
            points[name] = action.strip() or "raise"
    return points


def reset() -> None:
    """Forget which ``once`` points have fired in this process."""
    _fired.clear()


def failpoint(name: str) -> None:
    action = armed().get(name)
    if action is None:
        return
    message = f"failpoint {name!r} fired ({FAILPOINTS_VARIABLE})"
    if action == "raise":
        raise InjectedFault(message)
    if action == "once":
        if name not in _fired:
            _fired.add(name)
            raise InjectedFault(message + " (once)")
        return
    if action == "pause":
        seconds = float(os.environ.get(PAUSE_SECONDS_VARIABLE) or DEFAULT_PAUSE_SECONDS)
        print(f"failpoint {name}: paused (pid {os.getpid()})", file=sys.stderr, flush=True)
        time.sleep(seconds)
        raise InjectedFault(f"{message}: paused {seconds:g} s and was not killed")
    if action.startswith("sleep="):
        time.sleep(float(action.removeprefix("sleep=")))
        return
    raise ValueError(
        f"{FAILPOINTS_VARIABLE}: unknown action {action!r} for {name!r} (raise, once, pause, sleep=SECONDS)"
    )
