"""Operations duties: silent feeds, raw-message retention, reload without disconnecting."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.mllp.client import MLLPClient, parse_ack
from edge.housekeeping import check_silence
from tests.integration.conftest import daemon_with
from tests.integration.test_mllp_intake import adt


async def test_a_silent_listener_is_flagged_until_a_message_arrives(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst", replace={
            'ack = "on-commit"': 'ack = "on-commit"\nsilence_warning_s = 60'}) as running:
        daemon = running.daemon
        now = time.time()
        assert check_silence(daemon.settings, daemon.metrics, daemon.started_wall, now) == []
        assert check_silence(daemon.settings, daemon.metrics, daemon.started_wall,
                             now + 61) == ["adt"]
        assert daemon.metrics.silent_listeners == {"adt"}
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            await client.send(adt("WAKE"))
        assert check_silence(daemon.settings, daemon.metrics, daemon.started_wall) == []
        assert daemon.metrics.silent_listeners == set()


async def test_retention_drops_old_processed_payloads_only(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst", replace={
            'ack = "on-commit"': 'ack = "on-processed"'}) as running:
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            assert parse_ack(await client.send(adt("OLD"))).code == "AA"
            assert parse_ack(await client.send(adt("NEW"))).code == "AA"
            bad = await client.send(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\r")
        assert parse_ack(bad).code == "AR"
        db = running.settings.storage.dir / "edge.db"
        old = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE inbox_messages SET received_at = ? WHERE control_id = 'OLD' "
                         "OR control_id IS NULL", (old,))
        assert await running.daemon.prune_raw_messages(30) == 1
        with sqlite3.connect(db) as conn:
            rows = dict(conn.execute(
                "SELECT coalesce(control_id, 'dead'), length(payload) FROM inbox_messages"))
        assert rows["OLD"] == 0  # payload gone, metadata kept
        assert rows["NEW"] > 0 and rows["dead"] > 0  # recent, and dead letters, are kept
        assert await running.daemon.prune_raw_messages(30) == 0


async def test_reload_keeps_open_mllp_connections(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst") as running:
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            assert parse_ack(await client.send(adt("BEFORE"))).code == "AA"
            config = running.daemon.config_path
            config.write_text(config.read_text().replace(
                'ack = "on-commit"', 'ack = "on-commit"\nidle_timeout_s = 600'))
            assert await running.daemon.reload()
            assert running.daemon.settings.mllp[0].idle_timeout_s == 600
            # Same connection, no reconnect.
            assert parse_ack(await client.send(adt("AFTER"))).code == "AA"
