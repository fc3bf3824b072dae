"""The winner rule: per key the greatest (order_by, object key, offset) wins.

Object key and offset break ties between equal ``order_by`` values, so the winner does not
depend on listing order or on which run saw the rows first.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from firehose_loader.config import Stream
from firehose_loader.records.schema import OBJECT_COLUMN, OFFSET_COLUMN


def choose_winners(stream: Stream, keys: pa.Table, object_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dedupe in pandas: positions of the winning rows (ascending) and of the losing rows.

    ``keys`` holds the key columns, the order column and the offset; ``object_rank`` each row's
    object key as its rank among the hour's object keys (the same order as the keys' text).
    Per key the greatest (order_by, object key, offset) wins: sorted by those, the last row of
    each key is its winner.
    """
    import pandas as pd

    frame = keys.select([*stream.key, stream.order_by, OFFSET_COLUMN]).to_pandas(types_mapper=pd.ArrowDtype)
    frame[OBJECT_COLUMN] = object_rank
    frame[OFFSET_COLUMN] = frame[OFFSET_COLUMN].to_numpy(dtype=np.int64)
    ordered = frame.sort_values([stream.order_by, OBJECT_COLUMN, OFFSET_COLUMN], kind="stable")
    is_winner = ~ordered.duplicated(subset=list(stream.key), keep="last").to_numpy()
    positions = ordered.index.to_numpy()
    return np.sort(positions[is_winner]), positions[~is_winner]


def _object_ranks(object_keys: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Each row's object key as its rank in code-point order, and the keys by rank."""
    encoded = object_keys.dictionary_encode()
    names = encoded.dictionary.to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    return rank[encoded.indices.to_numpy()], [names[index] for index in order]


def dedupe(stream: Stream, rows: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """Keep one row per key: the greatest (order_by, object key, offset) wins.

    Object key and offset break ties between equal ``order_by`` values, so the
    winner does not depend on listing order or on which run saw the rows first.
    Returns the winners sorted by key and the number of losing rows per object.
    """
    import pandas as pd

    object_rank, names = _object_ranks(rows.column(OBJECT_COLUMN).combine_chunks())
    winners, losers = choose_winners(stream, rows, object_rank)
    duplicates = count_losers(object_rank[losers], names)
    chosen = rows.take(pa.array(winners, type=pa.int64()))
    by_key = chosen.select(list(stream.key)).to_pandas(types_mapper=pd.ArrowDtype)
    order = by_key.sort_values(list(stream.key), kind="stable").index.to_numpy()
    return chosen.take(pa.array(order, type=pa.int64())), duplicates


def count_losers(loser_ranks: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(loser_ranks, minlength=len(names)) if len(loser_ranks) else np.zeros(len(names), np.int64)
    return {names[rank]: int(count) for rank, count in enumerate(counts) if count}
