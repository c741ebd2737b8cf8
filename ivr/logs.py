"""LOG_FORMAT=json: one JSON object a line, for log shipping (Loki, Elasticsearch, CloudWatch, journald readers).

Each line has the time (UTC, ISO 8601), level, logger and message. An error adds its type and where it was
raised (file, line, function), never its text: an exception's message may quote what a caller said or a phone
number, and the line logs neither (docs/reliability-and-security.md). gunicorn.conf.py uses the same formatter
for gunicorn's own and access logs; `configure` sets it up for the flask commands and `python -m ivr`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback
from typing import Any

#: The values LOG_FORMAT takes.
LOG_FORMATS = ("text", "json")
#: Frames of an error's traceback kept: the innermost ones, where it happened.
WHERE_FRAMES = 5


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON: time, level, logger, message; for an error, its type and place only."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            frames = traceback.extract_tb(record.exc_info[2])[-WHERE_FRAMES:]
            entry["where"] = [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames]
        return json.dumps(entry, ensure_ascii=False)


def configure(log_format: str) -> None:
    """With LOG_FORMAT=json and no logging set up yet (a flask command, `python -m ivr`), log JSON to stderr.

    Under gunicorn, gunicorn.conf.py has already given the root logger its JSON handler: nothing to do.
    """
    root = logging.getLogger()
    if log_format != "json" or root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def gunicorn_logconfig() -> dict[str, Any]:
    """gunicorn's `logconfig_dict` for LOG_FORMAT=json: its error and access logs and the line's own, as JSON."""
    handlers = {
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": handlers,
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }
