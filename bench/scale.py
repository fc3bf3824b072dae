"""BENCH_SCALE_SIZES: a split hour at growing sizes, by this tree and by BENCH_BASELINE, with each task's memory.

The part size (BENCH_SCALE_PART_BYTES) is the same at every size, so a bigger hour has more parts,
not bigger ones. What grows with the hour is whatever one task holds for the whole hour: the
largest task's peak RSS at each size says whether the hour is capped by one worker.
"""

from __future__ import annotations

from typing import Any

from bench.baseline import baseline_label, baseline_tree
from bench.checks import table_checks, tables_agree
from bench.common import fmt_rss, load_average, pg_connect, table_for
from bench.config import Config
from bench.contenders.split import run_split
from bench.data import ensure_data

# The split-at-scale run's tables: scale_<size> for this tree, scale_before_<size> for the baseline.
LABEL = "scale"


def scale_paths(settings: Config) -> list[tuple[str, str | None]]:
    """(label, library path or None for this tree): this tree, then the baseline when one is given."""
    paths: list[tuple[str, str | None]] = [(LABEL, None)]
    if settings.baseline:
        paths.append((baseline_label(settings.baseline, LABEL), baseline_tree(settings.baseline)))
    return paths


def run_scale(settings: Config) -> dict[str, Any]:
    """Each size's hour split into parts of BENCH_SCALE_PART_BYTES, by every path; the tables checked."""
    paths = scale_paths(settings)
    sizes = []
    for size in settings.scale_sizes:
        print(f"\n== split at scale: {size:,} records, parts of {settings.scale_part_bytes:,} bytes ==")
        data = ensure_data(size)
        results, checks = {}, {}
        for label, pythonpath in paths:
            load_before = load_average()
            result = run_split(size, label, pythonpath, settings.scale_part_bytes)
            result["load_before"] = load_before
            results[label] = result
            print(
                f"  {label:<22} {result['seconds']:8.1f} s  {result['parts']} parts  CPU {result['cpu_seconds']:7.1f} s  "
                f"largest task {result['largest_task']} {fmt_rss(result['peak_rss'])}  (load {load_before})"
            )
            checks[label] = table_checks(label, size)
            # Checked, the table goes: a 10 M-record table is ~8 GB, and the next path writes its own.
            drop_table(label, size)
        sizes.append({"size": size, "data": data, "results": results, "checks": checks})
    return {"part_bytes": settings.scale_part_bytes, "labels": [label for label, _ in paths], "sizes": sizes}


def drop_table(label: str, size: int) -> None:
    schema, table = table_for(label, size)
    with pg_connect(autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}"')


def scale_agrees(scale: dict[str, Any]) -> bool:
    """Every path's table holds the same rows at every size (one per key)."""
    return all(tables_agree(item["checks"], item["size"]) for item in scale["sizes"])


def growth(scale: dict[str, Any], label: str) -> tuple[int, int, float] | None:
    """The largest task's peak RSS at the smallest and the largest size of ``label``'s runs, and their ratio."""
    runs = [item["results"][label] for item in scale["sizes"] if label in item["results"]]
    if len(runs) < 2:
        return None
    first, last = runs[0]["peak_rss"], runs[-1]["peak_rss"]
    return first, last, last / first
