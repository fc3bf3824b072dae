"""Audit alerts through Airflow notifiers, configurable per stream (``audit_notifier``)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from airflow.sdk import BaseNotifier

from firehose_loader.config import NotifierSpec

log = logging.getLogger(__name__)

# The key under which an alert's details reach the notifier's context (and its templates,
# e.g. an SmtpNotifier subject of "{{ firehose_audit.summary }}").
CONTEXT_KEY = "firehose_audit"


class LogNotifier(BaseNotifier):
    """The default: the alert as a warning in the task log."""

    def notify(self, context: Any) -> None:
        log.warning(
            "firehose-loader audit alert: %s\n%s", context[CONTEXT_KEY]["summary"], context[CONTEXT_KEY]["report"]
        )


def build_notifier(spec: NotifierSpec) -> BaseNotifier:
    module_name, _, class_name = spec.class_path.rpartition(".")
    try:
        notifier_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"audit_notifier class {spec.class_path!r} cannot be imported: {exc}") from exc
    return notifier_class(**spec.kwargs)


def send_alert(spec: NotifierSpec, context: Any, alert: dict[str, Any]) -> None:
    build_notifier(spec)({**context, CONTEXT_KEY: alert})
