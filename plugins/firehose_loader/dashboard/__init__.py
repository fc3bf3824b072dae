"""The audit dashboard: read the loader's tables, draw each stream's last 48 hours.

Free of Airflow (the plugin in ``plugins/firehose_dashboard.py`` is the thin layer that
authenticates the request and opens the warehouse connection). Import each part from its module:

* :mod:`~firehose_loader.dashboard.model`: the window, one point per hour, the summary, an hour's detail, JSON;
* :mod:`~firehose_loader.dashboard.queries`: the read-only reads of the warehouse (``include/sql/dashboard/``);
* :mod:`~firehose_loader.dashboard.chart`: the SVG chart (``templates/chart.svg.j2``);
* :mod:`~firehose_loader.dashboard.page`: the HTML page (``templates/dashboard.html``).
"""
