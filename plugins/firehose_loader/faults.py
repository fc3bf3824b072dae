"""Named points where tests can make a run fail on purpose.

``FIREHOSE_LOADER_FAILPOINTS=after_copy,before_commit`` makes the named points
raise :class:`InjectedFault`. Unset (always, in production) they do nothing.
"""

from __future__ import annotations

import os

FAILPOINTS_VARIABLE = "FIREHOSE_LOADER_FAILPOINTS"


class InjectedFault(RuntimeError):
    pass


def failpoint(name: str) -> None:
    armed = {item.strip() for item in os.environ.get(FAILPOINTS_VARIABLE, "").split(",") if item.strip()}
    if name in armed:
        raise InjectedFault(f"failpoint {name!r} fired ({FAILPOINTS_VARIABLE})")
