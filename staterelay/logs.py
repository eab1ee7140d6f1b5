"""Logging setup for ``staterelay serve``: human text or one JSON object per line, on stderr."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from staterelay.settings import LogSettings

ACCESS_LOGGER = "staterelay.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# Facts a record may carry as ``extra=``, written as top-level JSON keys when present (the
# access line sets them all). Named one by one, so nothing else a record holds is written.
RECORD_FIELDS = ("request_id", "route", "method", "status", "duration_ms", "tenant")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the request's facts."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in RECORD_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StateRelayHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` installs; replaced, not duplicated, on a second call."""


def configure_logging(log: LogSettings, *, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record at ``log.level`` or above to stderr in ``log.format``."""
    handler = _StateRelayHandler(stream if stream is not None else sys.stderr)
    if log.format == "json":
        handler.setFormatter(JsonFormatter())
    else:  # "auto" and "text": a person reads this
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StateRelayHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    level = LEVELS[log.level]
    root.setLevel(level)
    # Access lines are INFO records: shown at info and debug, quieted by a higher level or
    # by log.access: false.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET if log.access else logging.WARNING)
    # asyncio's DEBUG records (the selector in use) tell an operator nothing.
    logging.getLogger("asyncio").setLevel(max(level, logging.INFO))
    return handler
