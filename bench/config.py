"""Every BENCH_* variable in one place: its default and meaning, read once into a frozen :class:`Config`.

``python -m bench --help`` prints the table below. The variables marked *worker* are set by the bench
for its own worker processes (see bench/worker.py); a user does not set them.
"""

# variable() returns dataclasses.field(), which RUF009 does not know by that name.
# ruff: noqa: RUF009

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# bench/config.py -> the project; a worker runs from a copy of the package and is told the project (BENCH_ROOT).
HERE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONTENDERS = ("limit", "ours", "split", "dag", "deployed", "naive", "dlt")
FULL_SHARD_HOUR = 3_600_000
# What BENCH_FULL=1 adds to the scale and audit runs, unless their variables are set.
FULL_SCALE_SIZES = (1_000_000, 10_000_000)
FULL_AUDIT_KEYS = 1_000_000
# Left out of the "Reproduce" command in the report (a path of this run, or a worker's).
NOT_REPRODUCED = ("BENCH_RESULTS", "BENCH_MANIFEST", "BENCH_SCHEMA")


class ConfigError(ValueError):
    """A BENCH_* variable the bench cannot use."""


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(size) for size in text.split(",") if size.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(","))


def _flag(text: str) -> bool:
    return text == "1"


def _optional(text: str) -> str | None:
    return text or None


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _optional_int(text: str) -> int | None:
    return int(text) if text else None


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(path) for path in text.split(os.pathsep) if path)


def variable(name: str, default: str, meaning: str, parse: Callable[[str], Any] = str, worker: bool = False) -> Any:
    """A field of :class:`Config` read from ``name`` (``default`` when unset or empty)."""
    return field(metadata={"env": name, "default": default, "meaning": meaning, "parse": parse, "worker": worker})


def library_paths(environ: Mapping[str, str]) -> tuple[Path, Path]:
    """The project (BENCH_ROOT) and the library under test (BENCH_PLUGINS, default the project's plugins/)."""
    root = Path(environ.get("BENCH_ROOT") or HERE_ROOT)
    return root, Path(environ.get("BENCH_PLUGINS") or root / "plugins")


@dataclass(frozen=True)
class Config:
    # What runs, at which sizes.
    sizes: tuple[int, ...] = variable("BENCH_SIZES", "100000,1000000", "comma-separated record counts", _sizes)
    full: bool = variable("BENCH_FULL", "", "1: add 3600000 (a full shard-hour) to the sizes", _flag)
    contenders: tuple[str, ...] = variable(
        "BENCH_CONTENDERS", ",".join(DEFAULT_CONTENDERS), "comma-separated contenders", _names
    )
    seed: int = variable(
        "BENCH_SEED", "20260301", "the generator's seed: another seed is another hour of the same shape", int
    )
    repeat: int = variable(
        "BENCH_REPEAT",
        "1",
        "runs of the limit, ours, dag and deployed per size, interleaved; medians are reported",
        int,
    )
    repeat_large: int = variable("BENCH_REPEAT_LARGE", "1", "at most this many runs above 1 M records", int)
    results: Path = variable("BENCH_RESULTS", "", "where to write the report (default bench/results.md)", _optional)
    # Per contender.
    split_bytes: int = variable(
        "BENCH_SPLIT_BYTES",
        str(256 << 20),
        "the split contender's split_above_bytes (256 MiB: a 3.6 M hour in 4 parts)",
        int,
    )
    split_workers: int = variable("BENCH_SPLIT_WORKERS", "2", "parts of the split contender run at once", int)
    split_min: int = variable("BENCH_SPLIT_MIN", str(FULL_SHARD_HOUR), "smallest size the split contender runs at", int)
    dlt_max: int = variable("BENCH_DLT_MAX", "1000000", "largest size dlt runs at (dlt takes minutes per million)", int)
    naive_max: int = variable(
        "BENCH_NAIVE_MAX", "1000000", "largest size the naive loader runs at (it needs ~7 GB per million)", int
    )
    dag_max: int = variable("BENCH_DAG_MAX", "1000000", "largest size the whole-DAG runs (dag, deployed) run at", int)
    baseline: str | None = variable(
        "BENCH_BASELINE",
        "",
        "a git ref (or a folder with plugins/ and include/): also run ours, split and the scale run from there, once "
        "(before/after)",
        _optional,
    )
    baseline_max: int = variable(
        "BENCH_BASELINE_MAX",
        "1000000",
        "largest size ours and split run from the baseline at (the scale run: every size)",
        int,
    )
    scale_sizes: tuple[int, ...] = variable(
        "BENCH_SCALE_SIZES",
        "",
        "the split-at-scale run: record counts of a split hour, run by this tree and by BENCH_BASELINE "
        "(BENCH_FULL: 1000000,10000000; empty = skip)",
        _sizes,
    )
    scale_part_bytes: int = variable(
        "BENCH_SCALE_PART_BYTES",
        str(64 << 20),
        "the split-at-scale run's split_above_bytes, the same at every size (64 MiB: 4 parts at 1 M, 39 at 10 M)",
        int,
    )
    audit_keys: int = variable(
        "BENCH_AUDIT_KEYS",
        "0",
        "the audit run: keys per healthy hour (BENCH_FULL: 1000000; 0 = skip, so a plain make bench takes no longer)",
        int,
    )
    audit_hours: int = variable("BENCH_AUDIT_HOURS", "24", "the audit run: healthy hours audited", int)
    merge_base: int = variable(
        "BENCH_MERGE_BASE", "0", "rows already in the target for the merge-cost run (e.g. 10000000; 0 = skip)", int
    )
    merge_size: int = variable(
        "BENCH_MERGE_SIZE", "1000000", "the hour merged in the merge-cost run (the largest size if not run)", int
    )
    # Names in the warehouse and S3.
    namespace: str = variable(
        "BENCH_NAMESPACE",
        "bench",
        "prefix of every schema, stream name and stage key (runs side by side do not touch each other's)",
    )
    loader_schema: str = variable(
        "BENCH_LOADER_SCHEMA",
        "",
        "the loader's own tables (ledger, load_hours); default <namespace>_loader, a baseline's <namespace>_loader_baseline",
        _optional,
    )
    # Set by the bench for its worker processes.
    root: Path = variable("BENCH_ROOT", "", "the project (a worker runs from a copy of bench/)", _optional, True)
    plugins: Path = variable(
        "BENCH_PLUGINS", "", "the library under test: this tree's plugins/ or a baseline's", _optional, True
    )
    schema: str | None = variable("BENCH_SCHEMA", "", "the target table's schema for ours' tasks", _optional, True)
    manifest: Path | None = variable(
        "BENCH_MANIFEST", "", "the manifest (or split plan) passed from task to task", _optional_path, True
    )
    part: int | None = variable("BENCH_PART", "", "the split part a worker extracts", _optional_int, True)
    part_out: Path | None = variable("BENCH_PART_OUT", "", "where that part's result goes", _optional_path, True)
    part_outs: tuple[Path, ...] = variable(
        "BENCH_PART_OUTS", "", "the parts' results, for combine (os.pathsep-separated)", _paths, True
    )
    # BENCH_* as set, for the report's "Reproduce" command.
    given: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Config:
        values: dict[str, Any] = {}
        for item in fields(cls):
            if "env" not in item.metadata:
                continue
            raw = environ.get(item.metadata["env"]) or item.metadata["default"]
            try:
                values[item.name] = item.metadata["parse"](raw)
            except ValueError as error:
                raise ConfigError(f"{item.metadata['env']}={raw!r}: {error}") from None
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,20}", values["namespace"]):
            raise ConfigError(f"BENCH_NAMESPACE must be a short lowercase identifier, got {values['namespace']!r}")
        unknown = set(values["contenders"]) - set(DEFAULT_CONTENDERS)
        if unknown:
            raise ConfigError(f"unknown contender(s) {sorted(unknown)}; known: {DEFAULT_CONTENDERS}")
        if values["full"] and FULL_SHARD_HOUR not in values["sizes"]:
            values["sizes"] = (*values["sizes"], FULL_SHARD_HOUR)
        if values["full"] and not environ.get("BENCH_SCALE_SIZES"):
            values["scale_sizes"] = FULL_SCALE_SIZES
        if values["full"] and not environ.get("BENCH_AUDIT_KEYS"):
            values["audit_keys"] = FULL_AUDIT_KEYS
        values["root"], values["plugins"] = library_paths(environ)
        values["results"] = Path(values["results"] or values["root"] / "bench" / "results.md")
        values["loader_schema"] = values["loader_schema"] or f"{values['namespace']}_loader"
        values["given"] = tuple(
            (name, environ[name])
            for name in sorted(environ)
            if name.startswith("BENCH_") and name not in NOT_REPRODUCED
        )
        return cls(**values)


@functools.cache
def config() -> Config:
    """This process's configuration, read from its environment once."""
    return Config.from_environ(os.environ)


def describe() -> str:
    """The variables, their defaults and meaning (``python -m bench --help``)."""
    lines = []
    for item in fields(Config):
        if "env" in item.metadata:
            meta = item.metadata
            default = f" (default {meta['default']})" if meta["default"] else ""
            lines.append(f"  {meta['env']:<20} {'[worker] ' if meta['worker'] else ''}{meta['meaning']}{default}")
    return "\n".join(lines)
