"""Decode worker processes: objects decoded side by side, handed back in their order."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ProcessPoolExecutor

from firehose_loader.config import Stream
from firehose_loader.records.coercion import POSTGRES_LIMITS, WarehouseLimits
from firehose_loader.records.validate import ObjectRows, SourceObject, decode_and_validate


def decoded_objects(
    stream: Stream, objects: Iterable[SourceObject], processes: int = 1, limits: WarehouseLimits = POSTGRES_LIMITS
) -> Generator[ObjectRows]:
    """The objects decoded, in their order; with ``processes`` > 1 that many worker processes decode side by side.

    Decoding holds the GIL, so threads would not help. The workers are forked, which starts
    them at once without importing anything again, and before ``objects`` is first read, so
    before the reader thread behind it exists (forking a process with threads can copy a
    lock some thread holds). At most ``processes + 1`` objects are out at a time, so memory
    stays bounded as in one process.
    """
    if processes <= 1:
        for source in objects:
            yield decode_and_validate(stream, source, limits)
        return
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("fork")) as pool:
        # Submitting forks every worker now, before the reader thread exists.
        for started in [pool.submit(os.getpid) for _ in range(processes)]:
            started.result()
        pending: deque[Future[ObjectRows]] = deque()
        try:
            for source in objects:
                pending.append(pool.submit(decode_and_validate, stream, source, limits))
                del source
                if len(pending) > processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, which container CPU sets narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
