"""Operator commands against a running daemon: status, messages list/show/replay."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from adapters.mllp.client import MLLPClient, parse_ack
from tests.integration.conftest import RunningDaemon, daemon_with
from tests.integration.test_mllp_intake import adt


async def hie_edge(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "edge", *args], capture_output=True, text=True,
        timeout=60)


async def test_status_json_reports_listeners_and_inbox(running: RunningDaemon) -> None:
    host, port = running.mllp()
    async with MLLPClient.connect(host, port) as client:
        await client.send(adt("ST1"))
        await client.send(adt("ST1"))
        await client.send(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\r")
    config = str(running.daemon.config_path)
    readyz = json.loads(await asyncio.to_thread(_get, running.admin_url + "/readyz"))
    assert readyz == {"ready": True, "listeners": True, "storage": True, "ledger": "ok"}
    result = await hie_edge("status", "--json", "--config", config)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["facility"] == "dev-facility"
    [listener] = status["listeners"]
    assert listener["name"] == "adt" and listener["bound"] == [f"{host}:{port}"]
    inbox = status["inbox"]
    assert {k: v for k, v in inbox.items() if k != "pending"} == {
        "received": 2, "acknowledged": {"AA": 1, "AR": 1}, "duplicates": 1, "dead_letters": 1}
    # The accepted message is either still waiting for the processing stage or done.
    assert inbox["pending"] + status["processing"]["processed"] == 1
    assert status["ledger"]["backend"] == "local"
    assert status["ledger"]["reachable"] is True  # probed by /readyz above
    human = await hie_edge("status", "--config", config)
    assert "duplicates 1" in human.stdout and f"{host}:{port}" in human.stdout


async def test_metrics_count_acks_by_code(running: RunningDaemon) -> None:
    host, port = running.mllp()
    async with MLLPClient.connect(host, port) as client:
        await client.send(adt("M1"))
    body = await asyncio.to_thread(_get, running.admin_url + "/metrics")
    assert 'hie_edge_acks_total{code="AA",listener="adt"} 1.0' in body
    assert "hie_edge_ack_latency_seconds_bucket" in body
    assert "PATID1234" not in body and "JONES" not in body


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def test_messages_list_show_and_replay_after_a_config_fix(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst", replace={
        'ack = "on-commit"': 'ack = "on-commit"\nversions = ["2.5.1"]'}) as running:
        config = running.daemon.config_path
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            refused = parse_ack(await client.send(adt("OLD1", version="2.3")))
        assert refused.code == "AR"
        listing = await hie_edge("messages", "list", "--state", "dead-letter", "--json",
                                 "--config", str(config))
        assert listing.returncode == 0, listing.stderr
        [row] = json.loads(listing.stdout)
        assert row["control_id"] == "OLD1" and row["reason"].startswith("MSH-12")
        assert "JONES" not in listing.stdout and "PATID1234" not in listing.stdout
        shown = await hie_edge("messages", "show", str(row["id"]), "--config", str(config))
        assert "dead-letter" in shown.stdout

        # Replay with the config unchanged: still refused, attempts counted.
        again = await hie_edge("messages", "replay", str(row["id"]), "--config", str(config))
        assert again.returncode == 0 and "still a dead letter" in again.stdout

        config.write_text(config.read_text().replace('versions = ["2.5.1"]',
                                                     'versions = ["2.3", "2.5.1"]'))
        fixed = await hie_edge("messages", "replay", str(row["id"]), "--config", str(config))
        assert fixed.returncode == 0 and "accepted" in fixed.stdout
        shown = await hie_edge("messages", "show", str(row["id"]), "--json", "--config",
                               str(config))
        after = json.loads(shown.stdout)
        assert (after["state"], after["ack_code"], after["attempts"]) == ("received", "AA", 2)

        # Reload applies the new versions list in place; the same message sent again is a
        # duplicate of the replayed one and gets its AA, not a second row.
        assert await running.daemon.reload()
        async with MLLPClient.connect(host, port) as client:
            resent = parse_ack(await client.send(adt("OLD1", version="2.3")))
        assert resent.code == "AA"
        rows = await hie_edge("messages", "list", "--json", "--config", str(config))
        assert len(json.loads(rows.stdout)) == 1
        missing = await hie_edge("messages", "show", "999", "--config", str(config))
        assert missing.returncode == 65


async def test_show_phi_reveals_the_message_and_audits_the_access(
        running: RunningDaemon) -> None:
    host, port = running.mllp()
    async with MLLPClient.connect(host, port) as client:
        await client.send(adt("PHI1"))
    config = str(running.daemon.config_path)
    masked = await hie_edge("messages", "show", "1", "--json", "--config", config)
    assert "JONES" not in masked.stdout and "raw" not in json.loads(masked.stdout)
    shown = await hie_edge("messages", "show", "1", "--show-phi", "--json", "--config", config)
    assert shown.returncode == 0, shown.stderr
    assert "PID|1||PATID1234^^^HOSP^MR||JONES^WILLIAM^A" in json.loads(shown.stdout)["raw"]
    import sqlite3

    db = running.settings.storage.dir / "edge.db"
    with sqlite3.connect(db) as conn:
        (events,) = conn.execute(
            "SELECT count(*) FROM resources WHERE type = 'AuditEvent'").fetchone()
    assert events == 1
