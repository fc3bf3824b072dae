"""The in-memory way through an hour: every row kept, then deduplicated at once.

An oracle for the tests: the library stages in bounded memory (``records.stage.stage_hour``),
which must give the same rows and counts as this.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from firehose_loader.config import Stream
from firehose_loader.records.dedupe import dedupe
from firehose_loader.records.pool import decoded_objects
from firehose_loader.records.schema import arrow_schema
from firehose_loader.records.stage import add_object
from firehose_loader.records.validate import ObjectStats, QuarantinedRecord, SourceObject


@dataclass
class HourBatch:
    rows: pa.Table
    objects: list[ObjectStats] = field(default_factory=list)
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    unreadable: list[SourceObject] = field(default_factory=list)

    @property
    def records_raw(self) -> int:
        return sum(stats.records_raw for stats in self.objects)


def build_hour_batch(stream: Stream, objects: Iterable[SourceObject]) -> HourBatch:
    """Decode, validate and dedupe one hour's objects, keeping count of every record.

    ``objects`` may be a generator that reads each body on demand: one body is in
    memory at a time, beside the validated columns of the objects before it.
    """
    tables: list[pa.Table] = []
    batch = HourBatch(rows=arrow_schema(stream).empty_table())
    for decoded in decoded_objects(stream, objects):
        table = add_object(batch, decoded)
        if table is not None:
            tables.append(table)
    if tables:
        rows = pa.concat_tables(tables)
        batch.rows, duplicates = dedupe(stream, rows)
        for stats in batch.objects:
            stats.records_duplicate = duplicates.get(stats.key, 0)
    return batch
