"""Timing an older commit's library (BENCH_BASELINE) beside this tree's: its tree, and the names that moved.

Ours' workers run on whichever library is first on their path (bench/worker.py), so every name the
bench calls in the library is looked up here, in this layout's module first and then in the layout
before the library was split into layers (``ingest``, ``batch``, ``dialects``). A library older than
``stage_clock`` has its extract stages timed by wrapping the functions they call.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Stages
from bench.config import config

_EXTRACT = ("firehose_loader.extract", "firehose_loader.ingest")
_LOAD = ("firehose_loader.load", "firehose_loader.ingest")
# Where each name lives: this layout's module first, then the old layout's.
LOCATIONS: dict[str, tuple[str, ...]] = {
    "parse_config": ("firehose_loader.config",),
    "Settings": ("firehose_loader.config",),
    "extract_hour": _EXTRACT,
    "extract_or_split": _EXTRACT,
    "extract_part": _EXTRACT,
    "combine_hour_parts": _EXTRACT,
    "ensure_tables": _LOAD,
    "load_and_merge": _LOAD,
    "staged_batch": _LOAD,
    "Postgres": ("firehose_loader.warehouse.postgres", "firehose_loader.dialects"),
    "stage_clock": ("firehose_loader.records.timing", "firehose_loader.batch"),
    "StageWriter": ("firehose_loader.layout",),
}


def library(name: str) -> Any:
    """``name`` from the library under test, in whichever layout it has."""
    for module_name in LOCATIONS[name]:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # This layout does not have the module (or its package); anything else missing is a real error.
            if error.name and (module_name == error.name or module_name.startswith(f"{error.name}.")):
                continue
            raise
        if hasattr(module, name):
            return getattr(module, name)
    raise ImportError(f"the library under test has no {name} (looked in {', '.join(LOCATIONS[name])})")


def combine_hour_parts(s3: Any, stream: Any, plan: dict[str, Any], parts: list[dict[str, Any]], run_id: Any) -> Any:
    """The library's combine_hour_parts on the split plan: since the typed hand-overs it takes the plan's
    manifest and parts apart (``manifest, planned, parts``); before, the plan whole (``split, parts``)."""
    combine = library("combine_hour_parts")
    if "planned" in inspect.signature(combine).parameters:
        return combine(s3, stream, plan["manifest"], plan["parts"], parts, run_id)
    return combine(s3, stream, plan, parts, run_id)


def stage_writer(run_id: str, task: str) -> Any:
    """What the library's extract functions take to name a stage: a StageWriter (an ingest's first
    try of ``task``) since stage keys name the DAG, task and try; before, the run id."""
    try:
        writer = library("StageWriter")
    except ImportError:
        return run_id
    return writer("ingest", run_id, task, 1)


@contextlib.contextmanager
def stage_timing(stages: Stages) -> Iterator[None]:
    """Time the extract step's stages into ``stages``: the library's stage_clock, or wrappers on older code."""
    try:
        clock = library("stage_clock")
    except ImportError:
        clock = None
    if clock is None:
        install_stage_wrappers(stages)
        yield
        return
    with clock() as seconds:
        yield
    stages.seconds.update(seconds)


def install_stage_wrappers(stages: Stages) -> None:
    """Time the extract step's parts by wrapping the library's functions (a library from before stage_clock)."""
    batch = importlib.import_module("firehose_loader.batch")
    ingest = importlib.import_module("firehose_loader.ingest")

    def wrap(module: Any, name: str, stage: str) -> None:
        original = getattr(module, name, None)
        if original is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            mark = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                stages.add(stage, time.perf_counter() - mark)

        setattr(module, name, timed)

    wrap(ingest, "list_hour_objects", "list+read")
    wrap(ingest, "read_object", "list+read")
    wrap(batch, "decode_object", "decode+validate")
    wrap(batch, "validate_records", "decode+validate")
    wrap(batch, "dedupe", "dedupe")
    wrap(ingest, "write_object", "stage write")
    wrap(ingest.pq, "write_table", "stage write")


@functools.cache
def baseline_tree(ref: str) -> str:
    """plugins/ and include/ of a git ref (or of a folder holding them), as a plugins path (extracted once a run)."""
    if Path(ref).is_dir():
        return str(Path(ref).resolve() / "plugins")
    folder = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(config().root), "archive", ref, "plugins", "include"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return str(folder / "plugins")


def baseline_label(ref: str, contender: str = "ours") -> str:
    return f"{contender} before ({Path(ref).name if Path(ref).is_dir() else ref})"


def baseline_loader_schema() -> str:
    """A baseline from another commit keeps its own ledger and load_hours."""
    return f"{config().loader_schema}_baseline"
