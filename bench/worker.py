"""How a contender runs in a worker process and reports its time and memory.

The bench runs every contender (each of ours' tasks, too) as ``python -P -m bench worker NAME SIZE OUT``
from a copy of the bench package taken when the run started, so that edits made meanwhile do not
reach a run. The worker calls the contender's function (``WORKERS`` in bench/contenders/__init__.py),
which calls :func:`start_clock` once its imports are done and returns a dict with at least
``seconds`` (its work's wall time) and ``stages``. The worker adds ``cpu_seconds`` (from
:func:`start_clock` on) and ``peak_rss`` (:class:`PeakRss`) and writes the dict to OUT as JSON;
:func:`run_worker` reads it back and adds ``process_seconds``, the process's wall time.

Inputs beyond the size go through the environment (BENCH_MANIFEST, BENCH_SCHEMA, ...: see
bench/config.py); the library under test is the first entry of the worker's PYTHONPATH (BENCH_PLUGINS).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.config import config


class PeakRss:
    """Peak memory of this process and its children: getrusage, plus a sampler for the tree's sum.

    The sampler sums proportional set sizes (PSS): the extract's decode workers are forked and
    share the parent's pages, which a sum of RSS would count once per process. Reading a process's
    PSS makes the kernel walk its page tables (~2 ms for 800 MB): sampled every 50 ms over a
    DAG run's dozen processes, the sampler took half a core from the run it measured (0.2 of a
    core at 250 ms, 0.1 at 500 ms), so it samples once a second. Memory in these runs rises and
    falls over seconds, and each process's own peak (ru_maxrss) is exact whatever the interval.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            try:
                total = sum(
                    process.memory_full_info().pss
                    for process in [me, *me.children(recursive=True)]
                    if process.is_running()
                )
            except psutil.Error:
                total = 0
            self.peak_tree = max(self.peak_tree, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        return max(own, children, self.peak_tree)


_work_cpu_start: float | None = None


def start_clock() -> float:
    """Start timing a contender's work (after its imports): returns the wall clock, notes the CPU clock."""
    global _work_cpu_start
    _work_cpu_start = cpu_seconds()
    return time.perf_counter()


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def worker_main(name: str, size: int, out: str) -> None:
    """In the worker process: run contender ``name`` on the ``size`` hour, write its result to ``out``."""
    from bench.contenders import WORKERS

    module_name, function_name = WORKERS[name].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    with PeakRss() as rss:
        result = function(size)
        result["cpu_seconds"] = cpu_seconds() - (_work_cpu_start or 0.0)
    result["peak_rss"] = rss.peak
    Path(out).write_text(json.dumps(result, default=str))


_package_copy: Path | None = None


def package_copy() -> Path:
    """A folder holding a copy of the bench package taken when the run started (workers import it from there)."""
    global _package_copy
    if _package_copy is None:
        folder = Path(tempfile.mkdtemp(prefix="bench-script-"))
        shutil.copytree(
            Path(__file__).resolve().parent,
            folder / "bench",
            ignore=shutil.ignore_patterns("__pycache__", "*.md", "runs"),
        )
        _package_copy = folder
    return _package_copy


def deployed_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child that should import as a deployed worker does."""
    environment = {**os.environ, **(extra or {})}
    # Let Python cache compiled modules (this sandbox sets PYTHONDONTWRITEBYTECODE, which makes every
    # process compile pandas & co. again, seconds each): a deployed worker imports from bytecode.
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def run_worker(
    name: str, size: int, env: dict[str, str] | None = None, pythonpath: str | None = None
) -> dict[str, Any]:
    """Run contender ``name`` in a fresh process (the library from ``pythonpath``, default this tree's)."""
    settings = config()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    plugins = pythonpath or str(settings.plugins)
    environment = deployed_environment(env)
    environment["BENCH_PLUGINS"] = plugins
    environment["BENCH_ROOT"] = str(settings.root)
    # The package's copy, then the library under test, then the project (tools/).
    environment["PYTHONPATH"] = os.pathsep.join([str(package_copy()), plugins, str(settings.root)])
    started = time.perf_counter()
    completed = subprocess.run(
        # -P: not the working directory (the project, whose bench/ is not the copy) first on sys.path.
        [sys.executable, "-P", "-m", "bench", "worker", name, str(size), out],
        env=environment,
        cwd=str(settings.root),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{name} at {size:,} failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-8000:]}")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    result["process_seconds"] = wall
    return result
