"""What the ingest and audit DAGs share: their timetable and the table's Asset."""

from __future__ import annotations

from airflow.sdk import Asset, CronDataIntervalTimetable

from firehose_loader.config import Settings, Stream

# A run covers its data interval [H, H+1): the run at 11:00 is about 10:00-11:00.
HOURLY = CronDataIntervalTimetable("0 * * * *", timezone="UTC")


def table_asset(stream: Stream, settings: Settings) -> Asset:
    return Asset(
        name=f"warehouse.{stream.qualified_table}",
        uri=f"x-warehouse://{settings.warehouse_conn_id}/{stream.schema}/{stream.table}",
        group="warehouse",
    )
