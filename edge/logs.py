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
import traceback
from pathlib import Path
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


def _exception(record: logging.LogRecord) -> str:
    """The exception's type and where it was raised, without its message: messages of
    third-party exceptions may quote the data they choked on."""
    if not record.exc_info or record.exc_info[0] is None:
        return ""
    frames = traceback.extract_tb(record.exc_info[2])
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(frames))
    return f"{record.exc_info[0].__name__} at {where}" if where else record.exc_info[0].__name__


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        line = f"{self.formatTime(record)} {record.levelname.lower()} {record.name}: "
        line += record.getMessage() + (f" {extra}" if extra else "")
        if record.exc_info:
            line += f" error={_exception(record)}"
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
        if record.exc_info:
            entry["error"] = _exception(record)
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
    for old in list(root.handlers):
        root.removeHandler(old)
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
