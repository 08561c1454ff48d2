"""Run every ``bench/*.py`` and write ``BENCHMARKS.md`` (``make bench``).

Each bench prints its figures beside a baseline measured in the same run (design.md,
"Targets"); with ``HIE_BENCH_JSON`` set it also appends them as JSON lines
(``bench/_figures.py``), which this script tabulates: figure, baseline, ratio. A bench that
records nothing structured still has its printed output in the report. The report also gives
the machine (cores, CPU model, memory, the disk under the repository), the date, the git
commit, and the fault-injection figures the tests in ``tests/faults`` wrote
(``build/fault-figures.json``: cycles, messages, losses, duplicates).

Usage::

    python scripts/bench_report.py [--only er7 store] [--out BENCHMARKS.md]
        [--faults build/fault-figures.json] [--timeout 1800]

Exits 1 when a bench failed (the report is written anyway, saying which).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The columns shown for each fault test first, in this order; any other figure follows.
FAULT_COLUMNS = ("cycles", "connections", "acknowledged", "losses", "duplicates")


@dataclass
class BenchRun:
    name: str
    returncode: int
    seconds: float
    output: str
    figures: list[dict[str, Any]] = field(default_factory=list)


# -- the machine -------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def disk(path: Path) -> str:
    """The filesystem holding ``path``: device, type, size, and whether it spins."""
    best: tuple[str, str, str] = ("?", "?", "/")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(path).startswith(mount.rstrip("/") + "/") and len(mount) >= len(best[2]):
                best = (device, fstype, mount)
    except OSError:
        pass
    device, fstype, mount = best
    stat = os.statvfs(path)
    size = stat.f_blocks * stat.f_frsize / 1024**3
    kind = ""
    name = Path(device).name
    for candidate in (name, name.rstrip("0123456789"), name.split("p")[0]):
        rotational = Path(f"/sys/block/{candidate}/queue/rotational")
        if candidate and rotational.exists():
            # As the kernel reports it (virtual disks often say 1 whatever backs them).
            kind = f", rotational={rotational.read_text().strip()}"
            break
    return f"{device} ({fstype}) at {mount}, {size:.0f} GiB{kind}"


def git(*args: str) -> str:
    try:
        # Read-only git queries (rev-parse, status); "git" from PATH like any developer tool.
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,  # noqa: S603, S607
                              text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, str]:
    commit = git("rev-parse", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "cores": str(os.cpu_count() or "unknown"),
        "CPU": cpu_model(),
        "memory": memory(),
        "disk": disk(ROOT),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
    }


# -- running the benches -----------------------------------------------------------------------

def benches(only: list[str] | None) -> list[Path]:
    found = sorted(p for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
    if only:
        missing = set(only) - {p.stem for p in found}
        if missing:
            raise SystemExit(f"bench_report: no bench named {', '.join(sorted(missing))}")
        found = [p for p in found if p.stem in only]
    return found


def run_bench(path: Path, timeout: float) -> BenchRun:
    with tempfile.TemporaryDirectory(prefix="hie-bench-report-") as tmp:
        figures_file = Path(tmp) / "figures.jsonl"
        env = {**os.environ, "HIE_BENCH_JSON": str(figures_file), "PYTHONUNBUFFERED": "1"}
        started = time.monotonic()
        try:
            # Our own bench scripts, run by this interpreter; the exit status is read below.
            done = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env,  # noqa: S603
                                  capture_output=True, text=True, timeout=timeout, check=False)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            code = -1
            output = (out.decode(errors="replace") if isinstance(out, bytes) else out)
            output += f"\n[bench_report: stopped after {timeout:g} s]"
        seconds = time.monotonic() - started
        figures = []
        if figures_file.exists():
            for line in figures_file.read_text().splitlines():
                try:
                    figures.append(json.loads(line))
                except ValueError:
                    continue
    return BenchRun(path.stem, code, seconds, output.rstrip(), figures)


# -- the report --------------------------------------------------------------------------------

def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def figures_table(figures: list[dict[str, Any]]) -> list[str]:
    lines = ["| figure | value | baseline (same run) | baseline value | ratio |",
             "|---|---:|---|---:|---:|"]
    for f in figures:
        ratio = f.get("ratio")
        better = "" if f.get("higher_is_better", True) else " (lower is better)"
        lines.append(
            f"| {f['name']} | {number(f['value'])} {f['unit']} | {f['baseline']} | "
            f"{number(f['baseline_value'])} {f['unit']} | "
            f"{'' if ratio is None else f'{ratio:.2f}'}{better} |")
    return lines


def fault_section(path: Path) -> list[str]:
    lines = ["## Fault injection and fuzzing", ""]
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    try:
        data: dict[str, dict[str, Any]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return [*lines, f"No figures found at `{shown}`: run `pytest tests/faults` (or "
                "`make faults-long`) first.", ""]
    lines += [f"From `pytest tests/faults` (figures in `{shown}`). "
              "Losses: acknowledged messages missing afterwards; duplicates: acknowledged "
              "messages stored more than once.", ""]
    faults = {k: v for k, v in data.items() if not k.startswith("fuzz_")}
    fuzz = {k: v for k, v in data.items() if k.startswith("fuzz_")}
    if faults:
        lines += ["| test | " + " | ".join(FAULT_COLUMNS) + " | other figures | recorded |",
                  "|---|" + "---:|" * len(FAULT_COLUMNS) + "---|---|"]
        for name, figs in sorted(faults.items()):
            cells = [number(figs[c]) if c in figs else "" for c in FAULT_COLUMNS]
            other = ", ".join(f"{k} {number(v)}" for k, v in sorted(figs.items())
                              if k not in FAULT_COLUMNS and k != "recorded_at")
            lines.append(f"| {name} | " + " | ".join(cells)
                         + f" | {other} | {figs.get('recorded_at', '')} |")
        lines.append("")
    if fuzz:
        lines += ["| fuzz target | seconds | inputs | crashes | hangs | recorded |",
                  "|---|---:|---:|---:|---:|---|"]
        for name, figs in sorted(fuzz.items()):
            lines.append(f"| {name.removeprefix('fuzz_')} | {number(figs.get('seconds'))} | "
                         f"{number(figs.get('inputs'))} | {number(figs.get('crashes'))} | "
                         f"{number(figs.get('hangs'))} | {figs.get('recorded_at', '')} |")
        lines.append("")
    return lines


def render(info: dict[str, str], runs: list[BenchRun], faults: Path) -> str:
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (`scripts/bench_report.py`); do not edit by hand. "
             "Every figure is printed beside a baseline measured in the same run on the same "
             "machine, because absolute timings on shared machines drift; compare ratios "
             "across runs, not raw rates.", "",
             "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in info.items()]
    lines += ["", "## Performance", ""]
    for run in runs:
        status = "" if run.returncode == 0 else f" -- FAILED (exit {run.returncode})"
        lines += [f"### `bench/{run.name}.py` ({run.seconds:.0f} s){status}", ""]
        if run.figures:
            lines += [*figures_table(run.figures), ""]
        else:
            lines += ["No structured figures (the bench does not call `bench/_figures.py`); "
                      "its output, as printed:", ""]
        lines += ["<details><summary>output</summary>", "", "```", run.output, "```", "",
                  "</details>", ""]
    lines += fault_section(faults)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="*", help="bench names (file stems) to run")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--faults", type=Path, default=Path(os.environ.get(
        "HIE_FAULT_FIGURES", ROOT / "build" / "fault-figures.json")))
    parser.add_argument("--timeout", type=float, default=1800.0, help="per bench, seconds")
    args = parser.parse_args(argv)
    info = machine()
    runs = []
    for path in benches(args.only):
        print(f"== bench/{path.name}", flush=True)
        run = run_bench(path, args.timeout)
        print(run.output, flush=True)
        runs.append(run)
    args.out.write_text(render(info, runs, args.faults.resolve()), encoding="utf-8")
    print(f"wrote {args.out}")
    failed = [r.name for r in runs if r.returncode != 0]
    if failed:
        print(f"bench_report: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
