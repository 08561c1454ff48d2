"""The disk fills up for real: the storage directory is a small tmpfs, a ballast file takes
most of it, and several connections send until the filesystem is full. Then: new messages
are answered AR with ERR-3 207 and are not stored (the sender keeps them), nothing
acknowledged before is damaged (``PRAGMA integrity_check``), and when space returns (the
ballast is deleted) the refused messages are accepted on resend, everything is processed and
anchored, and ``hie-edge verify --all`` passes.

Mounting a tmpfs needs root (CAP_SYS_ADMIN); elsewhere the test is skipped and the
``PRAGMA max_page_count`` variant in tests/integration/test_mllp_intake.py covers the ACK.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.mllp.client import MLLPClient, parse_ack
from tests.faults.support import (
    Load,
    check_delivered,
    integrity_check,
    message,
    poll,
    record_figures,
)
from tests.integration.conftest import RunningDaemon, daemon_with
from tests.integration.test_ledger_cli import hie_edge

CONNECTIONS = 4
FS_BYTES = 8 * 1024 * 1024
HEADROOM = 768 * 1024  # free bytes left beside the ballast when the load starts
REFUSALS_PER_CONNECTION = 3  # consecutive AR 207 that show the disk is full for everyone

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of :data:`FS_BYTES` (the instance's storage directory)."""
    data = tmp_path / "disk"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES},mode=0700",
                              "tmpfs", str(data)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def fill(directory: Path, leave: int) -> Path:
    """A ballast file taking all but ``leave`` bytes of the filesystem."""
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    ballast = directory / "ballast"
    with ballast.open("wb") as out:
        remaining = max(free - leave, 0)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            remaining -= out.write(chunk[:remaining])
    return ballast


async def until_full(host: str, port: int, prefix: str, load: Load,
                     refusals: dict[str, tuple[str, ...]]) -> None:
    """Send one message at a time until :data:`REFUSALS_PER_CONNECTION` in a row are refused;
    each refusal's ERR codes are kept by control id."""
    in_a_row = sent = 0
    async with MLLPClient.connect(host, port, timeout=60) as client:
        while in_a_row < REFUSALS_PER_CONNECTION:
            assert sent < 20_000, "the filesystem never filled"
            batch = [(f"{prefix}-{sent + i}", sent + i) for i in range(5)]
            sent += len(batch)
            raws = [message(cid, seq) for cid, seq in batch]
            load.messages.update((cid, raw) for (cid, _), raw in zip(batch, raws, strict=True))
            for (cid, _), answer in zip(batch, await client.send_many(raws), strict=True):
                ack = parse_ack(answer)
                assert ack.control_id == cid
                if ack.code in ("AA", "CA"):
                    load.acked.append(cid)
                    in_a_row = 0
                else:
                    refusals[cid] = (ack.code, *ack.err_codes)
                    in_a_row += 1


async def test_a_full_disk_refuses_with_207_keeps_what_it_had_and_recovers(
        small_fs: Path, tmp_path: Path) -> None:
    load = Load()
    refusals: dict[str, tuple[str, ...]] = {}
    async with daemon_with(tmp_path / "inst",
                           replace={'dir = "data"': f'dir = "{small_fs}"'}) as running:
        ballast = fill(small_fs, HEADROOM)
        host, port = running.mllp()
        await asyncio.wait_for(asyncio.gather(*(
            until_full(host, port, f"F{c}", load, refusals) for c in range(CONNECTIONS))), 180)
        acked_before_full = load.ack_count()
        db = small_fs / "edge.db"
        assert integrity_check(db) == ["ok"]  # while full, under the running daemon

        ready, _ = await running.daemon.readiness()
        assert ready  # full is not down: the daemon still answers and keeps what it has
        ballast.unlink()  # space returns
        # Senders resend what was refused (HL7 v2.5 2.9.2: an AR may be retried as is).
        resent = list(refusals)
        async with MLLPClient.connect(host, port, timeout=60) as client:
            answers = await client.send_many(load.messages[cid] for cid in resent)
        assert [parse_ack(a).code for a in answers] == ["AA"] * len(resent)
        load.acked.extend(resent)
        await settle(running)
        config = running.daemon.config_path
        settings = running.settings

    verify = hie_edge("verify", "--all", "--json", "--config", str(config))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    outcome = check_delivered(settings, load)
    record_figures("disk_full", {
        "filesystem_bytes": FS_BYTES, "connections": CONNECTIONS,
        "acknowledged_before_full": acked_before_full, "refused_207": len(refusals),
        "acknowledged": load.ack_count(), "losses": len(outcome.missing),
        "duplicates": len(outcome.duplicated), "unprocessed": len(outcome.unprocessed),
        "integrity": outcome.integrity, "records_verified": report["verified"],
    })
    assert acked_before_full > 0
    assert set(refusals.values()) == {("AR", "207")}
    assert outcome.missing == outcome.duplicated == outcome.unprocessed == []
    assert outcome.unreadable == []
    assert outcome.resources == outcome.expected_resources
    assert outcome.integrity == "ok"
    assert report["ok"] and report["pending"] == 0


async def settle(running: RunningDaemon) -> None:
    """Everything processed and anchored. The processing stage retries a failed round after
    a backoff and has no "idle" event, so this is a bounded poll on its status (see
    support.poll); the anchor is then made here, not by the interval timer."""
    async def processed() -> bool:
        return bool((await running.daemon.status())["inbox"]["pending"] == 0)

    await poll(processed, what="backlog processed after space returned", timeout=150)
    ledger = running.daemon._ledger
    assert ledger is not None
    ledger.anchorer.make_checkpoint()
    await ledger.anchorer.publish_pending()
    status = ledger.anchorer.status()
    assert status.last_anchored_size == status.log_size > 0
