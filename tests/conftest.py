"""Session setup shared by every test.

Airflow reads its configuration at import time, so the local stack's environment
(AIRFLOW_HOME under .local/, connections as AIRFLOW_CONN_* variables, the S3 endpoint)
is put in place here, before any test module imports Airflow. Nothing is started
here: integration tests ask for the ``stack`` fixture, which starts what is missing.
"""

from __future__ import annotations

import os

import pytest

from tools import stack

os.environ.update(stack.stack_environment())


@pytest.fixture(scope="session")
def stack_up() -> None:
    stack.up()
