"""Soak: push many messages through the whole path -- MLLP → inbox → processing (worker
processes) → encrypted store → Merkle log → anchored checkpoints -- with the daemon's memory
sampled, and fail if its RSS keeps growing after warm-up (``make soak``: one million).

The daemon runs as ``hie-edge run`` in a fresh instance (a temporary directory unless
``--dir``), its workers included in the figures. Several connections pipeline ORU^R01 and
ADT^A01 messages that convert; senders pause while the inbox backlog is above
``--max-backlog`` so the run measures the whole path, not an ever-growing queue. Every
``--interval`` seconds one line: messages acknowledged, rate, backlog, log size, anchored
size, RSS of the daemon and of its workers.

Pass/fail: once ``--warmup`` messages have been processed, the daemon's RSS (main process)
may not rise more than ``--max-growth-mb`` above its value at that point, and every message
must be acknowledged AA, processed and anchored by the end. Exit 0 on pass, 1 on fail.

Usage::

    python scripts/soak.py --messages 1000000          # make soak
    python scripts/soak.py --messages 50000 --warmup 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.mllp.client import MLLPClient, parse_ack  # noqa: E402
from edge.instance import InitOptions, init_instance  # noqa: E402
from tests.faults.support import record_figures  # noqa: E402

ORU = ("MSH|^~\\&|LAB|HOSP|HIE|EDGE|202601011200||ORU^R01^ORU_R01|{id}|P|2.5.1\r"
       "PID|1||PAT{n}^^^HOSP^MR||DOE^JANE||19800101|F\r"
       "OBR|1||F{id}|2345-7^Glucose^LN|||202601011100\r"
       "OBX|1|NM|2345-7^Glucose^LN||{n}|mg/dL|70-99|H|||F|||202601011100\r")
ADT = ("MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|HIE|EDGE|202601011200||ADT^A01^ADT_A01|{id}"
       "|P|2.5.1\rEVN|A01|202601011200\rPID|1||PAT{n}^^^HOSP^MR||JONES^WILLIAM^A||19610615|M\r"
       "PV1|1|I|2000^2012^01\r")
PATIENTS = 1000


def message(control_id: str, seq: int) -> bytes:
    template = ORU if seq % 2 == 0 else ADT
    return template.format(id=control_id, n=seq % PATIENTS).encode()


def rss_kib(pid: int) -> int:
    """Resident set size of one process (``VmRSS``), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(c) for c in (task / "children").read_text().split()]
                found += kids
                queue += kids
    return found


@dataclass
class Sample:
    elapsed: float
    acked: int
    pending: int
    log_size: int
    anchored: int
    rss_mib: float
    workers_mib: float

    @property
    def processed(self) -> int:
        """Messages through the processing stage (acknowledged minus the backlog)."""
        return self.acked - self.pending


@dataclass
class Run:
    total: int
    acked: int = 0
    rejected: int = 0
    samples: list[Sample] = field(default_factory=list)


class Daemon:
    """``hie-edge run`` in a subprocess, READY awaited on a fake NOTIFY_SOCKET."""

    def __init__(self, config: Path) -> None:
        self.dir = config.parent
        self.notify_path = self.dir / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path)}
        env.pop("JOURNAL_STREAM", None)
        self.log = (self.dir / "daemon.log").open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
            [sys.executable, "-m", "edge", "run", "--config", str(config)],
            env=env, stdout=self.log, stderr=self.log)
        self.notify.settimeout(60)
        while b"READY=1" not in self.notify.recv(65536).split(b"\n"):
            pass
        runtime = json.loads((self.dir / "data" / "daemon.json").read_text())
        host, _, port = runtime["listeners"]["adt"][0].rpartition(":")
        self.mllp = (host.strip("[]"), int(port))
        self.admin = f"http://{runtime['admin'][0]}"

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.admin}/status", timeout=30) as resp:  # noqa: S310
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        self.notify.close()
        self.log.close()
        return code


async def sender(daemon: Daemon, conn: int, connections: int, run: Run, go: asyncio.Event,
                 batch: int) -> None:
    host, port = daemon.mllp
    seq = conn
    async with MLLPClient.connect(host, port, timeout=120) as client:
        while seq < run.total:
            await go.wait()
            ids = [(f"S{s}", s) for s in range(seq, run.total, connections)][:batch]
            seq += connections * len(ids)
            answers = await client.send_many(message(cid, s) for cid, s in ids)
            for answer in answers:
                if parse_ack(answer).code in ("AA", "CA"):
                    run.acked += 1
                else:
                    run.rejected += 1


async def monitor(daemon: Daemon, run: Run, go: asyncio.Event, interval: float,
                  max_backlog: int, done: asyncio.Event) -> None:
    started = time.monotonic()
    last_acked, last_time = 0, started
    print(f"{'elapsed s':>9} {'acked':>9} {'msg/s':>7} {'backlog':>8} {'log size':>10} "
          f"{'anchored':>10} {'RSS MiB':>8} {'workers MiB':>11}", flush=True)
    while True:
        status = await asyncio.to_thread(daemon.status)
        pending = int(status["inbox"]["pending"])
        ledger = status.get("ledger", {})
        now = time.monotonic()
        workers = children(daemon.proc.pid)
        sample = Sample(now - started, run.acked, pending, int(ledger.get("log_size", 0)),
                        int(ledger.get("last_anchored_size", 0)),
                        rss_kib(daemon.proc.pid) / 1024,
                        sum(rss_kib(p) for p in workers) / 1024)
        run.samples.append(sample)
        rate = (run.acked - last_acked) / max(now - last_time, 1e-9)
        last_acked, last_time = run.acked, now
        print(f"{sample.elapsed:9.0f} {sample.acked:9,} {rate:7.0f} {pending:8,} "
              f"{sample.log_size:10,} {sample.anchored:10,} {sample.rss_mib:8.1f} "
              f"{sample.workers_mib:11.1f}", flush=True)
        # Backpressure: the senders wait while the processing stage catches up.
        if pending > max_backlog:
            go.clear()
        elif pending < max_backlog // 2:
            go.set()
        if done.is_set() and pending == 0 and sample.anchored == sample.log_size > 0:
            return
        await asyncio.sleep(interval)


def verdict(run: Run, warmup: int, max_growth_mib: float
            ) -> tuple[bool, str, dict[str, float]]:
    after = [s for s in run.samples if s.processed >= warmup]
    if len(after) < 2:
        return False, "too few samples after warm-up: raise --messages or lower --warmup", {}
    start = after[0].rss_mib
    peak = max(s.rss_mib for s in after)
    end = statistics.median(s.rss_mib for s in after[-3:])
    span = max(after[-1].processed - after[0].processed, 1)
    slope = (after[-1].rss_mib - after[0].rss_mib) / span * 100_000
    text = (f"RSS after warm-up ({warmup:,} messages processed): start {start:.1f} MiB, peak "
            f"{peak:.1f} MiB, end {end:.1f} MiB, growth {peak - start:+.1f} MiB "
            f"(bound {max_growth_mib:g} MiB), slope {slope:+.2f} MiB per 100k messages; "
            f"workers at end {after[-1].workers_mib:.1f} MiB")
    figures = {"rss_start_mib": round(start, 1), "rss_peak_mib": round(peak, 1),
               "rss_end_mib": round(end, 1), "rss_growth_mib": round(peak - start, 1),
               "rss_slope_mib_per_100k": round(slope, 2),
               "workers_end_mib": round(after[-1].workers_mib, 1)}
    return peak - start <= max_growth_mib, text, figures


async def soak(args: argparse.Namespace, directory: Path) -> int:
    config = init_instance(directory / "inst", InitOptions(mllp_port=0, admin_port=0))
    text = config.read_text().replace("anchor_interval_s = 10",
                                      f"anchor_interval_s = {args.anchor_interval}")
    config.write_text(text)
    daemon = Daemon(config)
    run = Run(args.messages)
    go, done = asyncio.Event(), asyncio.Event()
    go.set()
    watcher = asyncio.create_task(monitor(daemon, run, go, args.interval, args.max_backlog,
                                          done))
    started = time.monotonic()
    try:
        await asyncio.gather(*(sender(daemon, c, args.connections, run, go, args.batch)
                               for c in range(args.connections)))
        done.set()
        await asyncio.wait_for(watcher, args.settle_timeout)
    finally:
        watcher.cancel()
        code = daemon.stop()
    elapsed = time.monotonic() - started
    ok, text, rss = verdict(run, args.warmup, args.max_growth_mb)
    final = run.samples[-1]
    print(f"\n{run.acked:,} of {run.total:,} messages acknowledged ({run.rejected} rejected) "
          f"in {elapsed:.0f} s ({run.acked / elapsed:.0f} msg/s through the whole path); "
          f"log size {final.log_size:,}, anchored {final.anchored:,}; daemon exit {code}")
    print(text)
    ok = ok and run.acked == run.total and run.rejected == 0 and code == 0
    print("PASS" if ok else "FAIL")
    # Beside the fault tests' figures in BENCHMARKS.md (scripts/bench_report.py).
    record_figures("soak", {
        "messages": run.total, "acknowledged": run.acked, "rejected": run.rejected,
        "connections": args.connections, "seconds": round(elapsed),
        "msg_per_s": round(run.acked / elapsed), "log_size": final.log_size,
        "anchored": final.anchored, "warmup": args.warmup, **rss,
        "verdict": "pass" if ok else "fail"})
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=None,
                        help="messages before RSS is judged (default: 10%%, at least 10,000)")
    parser.add_argument("--max-growth-mb", type=float, default=64.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20, help="messages pipelined per send")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--max-backlog", type=int, default=20_000)
    parser.add_argument("--anchor-interval", type=float, default=5.0)
    parser.add_argument("--settle-timeout", type=float, default=1800.0)
    parser.add_argument("--dir", type=Path, help="keep the instance here (default: temporary)")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = max(10_000, args.messages // 10)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(soak(args, args.dir))
    directory = Path(tempfile.mkdtemp(prefix="hie-soak-"))
    try:
        return asyncio.run(soak(args, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
