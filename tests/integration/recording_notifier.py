"""A notifier for tests: appends each alert it receives to a JSON-lines file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier


class RecordingNotifier(BaseNotifier):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def notify(self, context: Any) -> None:
        with Path(self.path).open("a") as out:
            out.write(json.dumps(context["firehose_audit"]) + "\n")
