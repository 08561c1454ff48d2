"""Ingest → anchored → `hie-edge verify --all` passes; tampering is caught (issue 6)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from adapters.mllp.client import MLLPClient, parse_ack
from tests.integration.conftest import RunningDaemon, daemon_with

ORU = (b"MSH|^~\\&|LAB|HOSP|HIE|EDGE|202601011200||ORU^R01^ORU_R01|{id}|P|2.5.1\r"
       b"PID|1||PAT{n}^^^HOSP^MR||DOE^JANE||19800101|F\r"
       b"OBR|1||F{n}|2345-7^Glucose^LN|||202601011100\r"
       b"OBX|1|NM|2345-7^Glucose^LN||{n}|mg/dL|70-99|H|||F|||202601011100\r")


async def hie_edge(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "edge", *args],
                                   capture_output=True, text=True, timeout=120)


async def ingest_and_anchor(running: RunningDaemon, count: int) -> None:
    host, port = running.mllp()
    async with MLLPClient.connect(host, port) as client:
        answers = await client.send_many(
            ORU.replace(b"{id}", f"V{n}".encode()).replace(b"{n}", str(100 + n).encode())
            for n in range(count))
    assert {parse_ack(a).code for a in answers} == {"AA"}  # on-processed: stored and logged
    ledger = running.daemon._ledger
    assert ledger is not None
    await ledger.anchorer.tick()
    status = ledger.anchorer.status()
    assert status.last_anchored_size == status.log_size > 0


async def test_verify_passes_then_catches_a_changed_record(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst",
                           replace={'ack = "on-commit"': 'ack = "on-processed"'}) as running:
        await ingest_and_anchor(running, 10)
        config = str(running.daemon.config_path)
        ok = await hie_edge("verify", "--all", "--json", "--config", config)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        report = json.loads(ok.stdout)
        assert report["ok"] and report["checked"] == report["verified"] > 10
        assert report["anchors_checked"] >= 1

    db = tmp_path / "inst" / "data" / "edge.db"
    with sqlite3.connect(db) as conn:
        row, body = conn.execute(
            "SELECT row, body FROM resources WHERE type = 'Observation' LIMIT 1").fetchone()
        flipped = bytearray(body)
        flipped[40] ^= 0x01
        conn.execute("UPDATE resources SET body = ? WHERE row = ?", (bytes(flipped), row))
    bad = await hie_edge("verify", "--all", "--json", "--config", config)
    assert bad.returncode == 65
    findings = json.loads(bad.stdout)["findings"]
    assert findings == [{"what": f"row {row}", "problem": "integrity"}]


async def test_verify_catches_a_rewritten_log(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst",
                           replace={'ack = "on-commit"': 'ack = "on-processed"'}) as running:
        await ingest_and_anchor(running, 4)
        config = str(running.daemon.config_path)
    db = tmp_path / "inst" / "data" / "edge.db"
    with sqlite3.connect(db) as conn:
        # Leaf 0 rewritten and the stored subtrees above the leaves dropped, so roots are
        # recomputed from the rewritten leaves: the log no longer has the anchored roots.
        conn.execute("UPDATE ledger_nodes SET hash = zeroblob(32) WHERE id = 0")
        conn.execute("DELETE FROM ledger_nodes WHERE id >= ?", (1 << 48,))
    bad = await hie_edge("verify", "--all", "--json", "--config", config)
    assert bad.returncode == 65, bad.stdout + bad.stderr
    problems = {(f["what"].split(" (")[0].split("/")[0], f["problem"])
                for f in json.loads(bad.stdout)["findings"]}
    assert any(problem == "log-leaf" for _, problem in problems)
    assert any(what.startswith("checkpoint") for what, _ in problems)
