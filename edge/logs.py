"""Logging set-up: structured records, journald fields under systemd, never PHI.

Log calls pass PHI-free facts as ``extra={"fields": {...}}`` (control ids, message types,
sizes, peers, listener names); the formatters render them as ``key=value`` or JSON, and the
journal handler as journal fields (upper-cased, ``HIE_`` prefixed).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

try:  # pragma: no cover - optional systemd extra
    from systemd.journal import JournalHandler as _JournalHandler
except ImportError:  # pragma: no cover
    _JournalHandler = None

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        line = f"{self.formatTime(record)} {record.levelname.lower()} {record.name}: "
        line += record.getMessage() + (f" {extra}" if extra else "")
        if record.exc_info and record.levelno >= logging.ERROR:
            # Only the exception's type: messages of third-party exceptions may quote data.
            line += f" error={record.exc_info[0].__name__ if record.exc_info[0] else '?'}"
        return line


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info and record.exc_info[0]:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def _under_journal() -> bool:
    """True when stderr is the journal (``$JOURNAL_STREAM`` = device:inode of stderr)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


class _JournalFields(logging.Filter):  # pragma: no cover - needs libsystemd
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _fields(record).items():
            setattr(record, f"HIE_{key.upper()}", value)
        return True


def configure(level: str = "info", fmt: str = "text") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler
    if _JournalHandler is not None and _under_journal():  # pragma: no cover
        handler = _JournalHandler(SYSLOG_IDENTIFIER="hie-edge")
        handler.addFilter(_JournalFields())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    # aiohttp's access log would record URLs, which may carry identifiers in query strings.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
