"""Session setup shared by every test.

Airflow reads its configuration at import time, so the local stack's environment
(AIRFLOW_HOME under .local/, connections as AIRFLOW_CONN_* variables, the S3 endpoint)
is put in place here, before any test module imports Airflow. Nothing is started
here: integration tests ask for the ``stack`` fixture, which starts what is missing.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tools import stack

os.environ.update(stack.stack_environment())


@pytest.fixture(scope="session")
def stack_up() -> None:
    stack.up()


@pytest.fixture(scope="session")
def s3(stack_up) -> Any:
    """A boto3 client of the stack's S3 API (the moto server over HTTP)."""
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
