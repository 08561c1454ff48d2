from __future__ import annotations

import json
import logging

from edge.logs import JSONFormatter, TextFormatter


def _record_with_exception(secret: str) -> logging.LogRecord:
    try:
        raise ValueError(f"could not parse {secret}")
    except ValueError:
        import sys

        record = logging.LogRecord("edge.test", logging.ERROR, __file__, 1, "stage failed",
                                   None, sys.exc_info())
    record.fields = {"control_id": "MSG1", "listener": "adt"}
    return record


def test_text_lines_carry_fields_and_where_an_error_was_raised_but_not_its_message() -> None:
    line = TextFormatter().format(_record_with_exception("EVERYMAN^ADAM"))
    assert "stage failed control_id=MSG1 listener=adt" in line
    assert "error=ValueError at test_logs.py:" in line
    assert "EVERYMAN" not in line


def test_json_lines_too() -> None:
    entry = json.loads(JSONFormatter().format(_record_with_exception("19610615")))
    assert entry["control_id"] == "MSG1" and entry["level"] == "error"
    assert entry["error"].startswith("ValueError at test_logs.py:")
    assert "19610615" not in json.dumps(entry)
