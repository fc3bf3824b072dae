"""Failures that retrying cannot fix.

Every such error derives from :class:`PermanentError`. The task layer turns it, in one place,
into a failure Airflow does not retry; its message says what to fix.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Retrying would fail the same way: a missing bucket, denied access, a table of the wrong shape."""
