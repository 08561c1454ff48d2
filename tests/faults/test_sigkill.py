"""Power cut under load: the daemon is SIGKILLed at random moments while several MLLP
connections pipeline messages that convert; after each restart it picks up where the database
says it was. At the end every message acknowledged AA/CA is in the inbox exactly once, was
processed exactly once (its resources stored once, readable), and is anchored:
``hie-edge verify --all`` passes with nothing pending.

The kill moments are drawn from a seeded generator (``HIE_FAULT_SEED``; the seed is in the
figures), so a failing run can be repeated. ``HIE_FAULT_CYCLES`` sets the number of kills.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import load_config
from tests.faults.support import (
    Load,
    check_delivered,
    descendants,
    end,
    env_int,
    pipeline,
    record_figures,
    wait_settled,
)
from tests.integration.conftest import DaemonProcess, NotifySocket, make_instance

CONNECTIONS = 4
CYCLES = env_int("HIE_FAULT_CYCLES", 5)
MAX_ACKS_BEFORE_KILL = 1000  # per cycle; the kill comes after a random number in [0, this]

pytestmark = pytest.mark.timeout(300 + 40 * CYCLES)


async def _cycle(daemon: DaemonProcess, cycle: int, load: Load, kill_after: int) -> None:
    """Load from :data:`CONNECTIONS` connections until ``kill_after`` more acknowledgements,
    then SIGKILL (sent from the client loop, so it lands while batches are in flight)."""
    host, port = daemon.mllp()
    start = load.ack_count()
    stop = asyncio.Event()
    workers: list[int] = []

    def maybe_kill() -> None:
        if not stop.is_set() and load.ack_count() - start >= kill_after:
            workers.extend(descendants(daemon.proc.pid))
            daemon.proc.send_signal(signal.SIGKILL)  # no shutdown path runs
            stop.set()

    clients = [asyncio.create_task(pipeline(host, port, f"K{cycle}-{c}", load, stop=stop,
                                            on_batch=maybe_kill))
               for c in range(CONNECTIONS)]
    done = asyncio.create_task(stop.wait())
    # The clients end only when the daemon dies; the daemon dies only through maybe_kill.
    finished, _ = await asyncio.wait({done, *clients}, timeout=120,
                                     return_when=asyncio.FIRST_COMPLETED)
    assert done in finished, f"cycle {cycle}: clients ended before the kill"
    await asyncio.wait_for(asyncio.gather(*clients), 60)
    assert daemon.proc.wait(30) == -signal.SIGKILL
    # The daemon's worker processes outlive a SIGKILL (test_orphans.py); systemd's
    # KillMode=control-group ends them in production, this test ends them itself.
    end(workers)


async def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
        tmp_path: Path, notify_socket: NotifySocket) -> None:
    seed = env_int("HIE_FAULT_SEED", random.SystemRandom().randrange(2**31))
    rng = random.Random(seed)
    config = make_instance(tmp_path / "inst", replace={
        # Anchor often, so kills also land between a checkpoint and its publication.
        "anchor_interval_s = 10": "anchor_interval_s = 0.5"})
    settings = load_config(config)
    load = Load()
    started = time.monotonic()
    for cycle in range(CYCLES):
        daemon = DaemonProcess(config, notify_socket)
        daemon.wait_ready()
        await _cycle(daemon, cycle, load, rng.randint(0, MAX_ACKS_BEFORE_KILL))

    # The last start: the backlog left by the kills is processed and anchored, then a clean
    # stop. Waiting on /status is a bounded poll (see support.poll for why).
    daemon = DaemonProcess(config, notify_socket)
    daemon.wait_ready()
    admin = daemon.runtime()["admin"]
    assert isinstance(admin, list)
    status = await wait_settled(f"http://{admin[0]}")
    assert daemon.stop() == 0, daemon.log()[-2000:]
    elapsed = time.monotonic() - started

    verify = subprocess.run([sys.executable, "-m", "edge", "verify", "--all", "--json",
                             "--config", str(config)], capture_output=True, text=True,
                            timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    outcome = check_delivered(settings, load)
    record_figures("sigkill", {
        "cycles": CYCLES, "connections": CONNECTIONS, "seed": seed,
        "acknowledged": load.ack_count(), "sent": len(load.messages),
        "unanswered_at_kill": load.unanswered, "stored": outcome.stored,
        "losses": len(outcome.missing), "duplicates": len(outcome.duplicated),
        "unprocessed": len(outcome.unprocessed), "unreadable": len(outcome.unreadable),
        "resources": outcome.resources, "expected_resources": outcome.expected_resources,
        "records_verified": report["verified"], "pending_anchor": report["pending"],
        "integrity": outcome.integrity, "seconds": round(elapsed, 1),
    })
    assert load.ack_count() > 0 and not load.rejected
    assert outcome.missing == [], f"seed {seed}"
    assert outcome.duplicated == [], f"seed {seed}"
    assert outcome.unprocessed == [], f"seed {seed}"
    assert outcome.unreadable == [], f"seed {seed}"
    assert outcome.integrity == "ok"
    assert report["ok"] and report["pending"] == 0
    assert outcome.resources == outcome.expected_resources, f"seed {seed}"
    assert report["verified"] == report["checked"] == outcome.resources
    assert status["processing"]["dead-letter"] == 0
