"""A short run of every atheris target (fuzz/), as CI can afford: a few seconds each from a
small seed set. ``make fuzz-long`` runs them for minutes each from the full seeds. A target
fails on any exception outside its declared errors, a hang past libFuzzer's ``-timeout`` or
memory past ``-rss_limit_mb`` (fuzz/_harness.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.support import REPO_ROOT, env_int, record_figures

TARGETS = sorted(p.stem for p in (REPO_ROOT / "fuzz").glob("fuzz_*.py"))
SECONDS = env_int("HIE_FUZZ_SECONDS", 2)

# atheris is a test dependency (pyproject): a machine without it fails here, not silently.
import atheris  # type: ignore[import-untyped]  # noqa: E402, F401


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_runs_clean(target: str, tmp_path: Path) -> None:
    env = {**os.environ, "HIE_FUZZ_DIR": str(tmp_path), "HIE_FUZZ_MAX_SEEDS": "40"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "fuzz" / f"{target}.py"),
         f"-max_total_time={SECONDS}", "-print_final_stats=1"],
        capture_output=True, text=True, env=env, timeout=SECONDS + 120)
    tail = result.stderr[-3000:]
    runs = [line for line in result.stderr.splitlines()
            if line.startswith("stat::number_of_executed_units")]
    executed = int(runs[-1].split(":")[-1]) if runs else 0
    # Recorded before the verdict, so a run that found something shows in BENCHMARKS.md.
    record_figures(f"fuzz_{target.removeprefix('fuzz_')}", {
        "seconds": SECONDS, "inputs": executed,
        "crashes": int("Uncaught Python exception" in result.stderr),
        "hangs": int("ERROR: libFuzzer: timeout" in result.stderr),
        "out_of_memory": int("out-of-memory" in result.stderr)})
    assert result.returncode == 0, tail
    assert "Done" in result.stderr, tail
    assert executed > 0
