"""The only layer that imports Airflow: connections, task bodies, the pieces every DAG shares, doc_md, notifiers."""
