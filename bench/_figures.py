"""Structured figures for ``scripts/bench_report.py`` (``make bench``), beside each bench's
human output. When ``HIE_BENCH_JSON`` names a file, :func:`record` appends one JSON line per
figure to it; otherwise it does nothing, so running a bench by hand is unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path


def record(bench: str, name: str, value: float, unit: str, *, baseline: str,
           baseline_value: float, higher_is_better: bool = True) -> None:
    """One figure and the baseline measured in the same run (design.md, "Targets")."""
    target = os.environ.get("HIE_BENCH_JSON")
    if not target:
        return
    line = {"bench": bench, "name": name, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value,
            "ratio": value / baseline_value if baseline_value else None,
            "higher_is_better": higher_is_better}
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
