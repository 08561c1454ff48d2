"""Key custody and backups as an operator runs them next to a live daemon: KEK rotation
online, Shamir split and recover, backup during intake, restore into an empty store."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

from adapters.mllp.client import MLLPClient, parse_ack
from tests.integration.conftest import daemon_with
from tests.integration.test_mllp_intake import adt


async def hie_edge(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "edge", *args], capture_output=True, text=True,
        timeout=120, input=stdin)


async def test_rotate_online_then_backup_and_restore(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst") as running:
        config = str(running.daemon.config_path)
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            before = await client.send_many(adt(f"R{i}") for i in range(20))
        old_kek = (tmp_path / "inst" / "keys" / "kek").read_bytes()

        rotated = await hie_edge("keys", "rotate", "--json", "--config", config)
        assert rotated.returncode == 0, rotated.stderr
        assert (tmp_path / "inst" / "keys" / "kek").read_bytes() != old_kek

        # The running daemon keeps acknowledging, and a replay needs the re-wrapped keys.
        async with MLLPClient.connect(host, port) as client:
            after = await client.send_many(adt(f"S{i}") for i in range(20))
        assert {parse_ack(a).code for a in before + after} == {"AA"}

        backup = tmp_path / "backup.db"
        made = await hie_edge("backup", str(backup), "--config", config)
        assert made.returncode == 0, made.stderr
        assert backup.stat().st_mode & 0o777 == 0o600

    # Restore into another instance that has the same keys and an empty storage dir.
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copytree(tmp_path / "inst" / "keys", restored / "keys")
    text = (tmp_path / "inst" / "edge.toml").read_text()
    (restored / "edge.toml").write_text(text)
    result = await hie_edge("restore", str(backup), "--json", "--config",
                            str(restored / "edge.toml"))
    assert result.returncode == 0, result.stderr + result.stdout
    listing = await hie_edge("messages", "list", "--limit", "100", "--json", "--config",
                             str(restored / "edge.toml"))
    ids = {row["control_id"] for row in json.loads(listing.stdout)}
    assert ids == {f"R{i}" for i in range(20)} | {f"S{i}" for i in range(20)}


async def test_split_and_recover_the_kek(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst") as running:
        config = str(running.daemon.config_path)
    split = await hie_edge("keys", "split", "--shares", "5", "--threshold", "3",
                           "--config", config)
    assert split.returncode == 0, split.stderr
    shares = [line for line in split.stdout.splitlines() if line.startswith("hiekek1:")]
    assert len(shares) == 5
    kek = tmp_path / "inst" / "keys" / "kek"
    original = kek.read_bytes()
    out = tmp_path / "recovered-kek"
    too_few = await hie_edge("keys", "recover", "--out", str(out), "--config", config,
                             stdin="\n".join(shares[:2]) + "\n")
    assert too_few.returncode != 0 and not out.exists()
    enough = await hie_edge("keys", "recover", "--out", str(out), "--config", config,
                            stdin="\n".join(shares[1:4]) + "\n")
    assert enough.returncode == 0, enough.stderr
    assert out.stat().st_mode & 0o777 == 0o400
    from edge.crypto.keys import read_kek_file

    assert read_kek_file(out).kek_id == read_kek_file(kek).kek_id
    assert kek.read_bytes() == original
