"""The streams file's refused streams, as an Airflow import error (this file defines no DAG).

dags/ingest.py and dags/audit.py build the DAGs of the valid streams only; a stream the
streams file declares wrongly is refused there and raised here, so the Airflow UI lists
it among the DAG import errors with its name and the field at fault, while every other
stream keeps its DAGs. An error of the file as a whole fails all three files.
"""

from __future__ import annotations

from firehose_loader.config import load_streams

load_streams().raise_errors()
