"""Wall-clock time of named steps, collected only when ``make bench`` asks for it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_stage_seconds: ContextVar[dict[str, float] | None] = ContextVar("firehose_loader_stage_seconds", default=None)


@contextmanager
def stage_clock() -> Iterator[dict[str, float]]:
    """Collect the wall-clock seconds of each named step inside the block (for ``make bench``)."""
    seconds: dict[str, float] = {}
    token = _stage_seconds.set(seconds)
    try:
        yield seconds
    finally:
        _stage_seconds.reset(token)


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Add the block's wall-clock time to ``step`` when a :func:`stage_clock` is collecting; else nothing."""
    seconds = _stage_seconds.get()
    if seconds is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - started
