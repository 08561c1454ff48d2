"""Transport-level behaviour with real peers: TLS and mutual TLS handshakes, python-hl7's
client (a third party), the `hie-edge send` command."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import hl7.client
import pytest

from adapters.mllp.client import MLLPClient, parse_ack
from adapters.mllp.errors import MLLPError
from adapters.mllp.framing import encode_frame
from adapters.tls import client_context
from edge.devca import create_ca, issue
from tests.integration.conftest import RunningDaemon, daemon_with
from tests.integration.test_mllp_intake import adt, rows

TLS_LISTENER = """
[[mllp]]
name = "secure"
bind = "127.0.0.1:0"
tls = { cert = "tls/node.pem", key = "tls/node-key.pem", client_ca = "tls/ca.pem" }
"""


@pytest.fixture
async def tls_running(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with daemon_with(tmp_path / "inst", TLS_LISTENER) as running:
        yield running


def _tls_dir(running: RunningDaemon) -> Path:
    return running.settings.storage.dir.parent / "tls"


async def test_mutual_tls_accepts_a_client_certificate_from_the_ca(
        tls_running: RunningDaemon) -> None:
    tls = _tls_dir(tls_running)
    context = client_context(ca=tls / "ca.pem", cert=tls / "node.pem", key=tls / "node-key.pem")
    host, port = tls_running.mllp("secure")
    async with MLLPClient.connect(host, port, ssl=context) as client:
        ack = parse_ack(await client.send(adt("TLS1")))
    assert (ack.code, ack.control_id) == ("AA", "TLS1")
    assert [r[1] for r in rows(tls_running)] == ["TLS1"]
    status = await tls_running.daemon.status()
    # The dev CA issues node certificates for 825 days.
    assert 820 <= status["certificates_days_left"]["mllp[1].tls.cert"] <= 825


async def test_client_without_certificate_is_refused(tls_running: RunningDaemon) -> None:
    tls = _tls_dir(tls_running)
    context = client_context(ca=tls / "ca.pem")
    host, port = tls_running.mllp("secure")
    with pytest.raises((MLLPError, ssl.SSLError, ConnectionError)):
        async with MLLPClient.connect(host, port, ssl=context, timeout=10) as client:
            await client.send(adt("NOCERT"))
    assert rows(tls_running) == []


async def test_client_with_a_certificate_from_another_ca_is_refused(
        tls_running: RunningDaemon, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    rogue = issue(create_ca(other, name="rogue"), other, "client", common_name="rogue")
    tls = _tls_dir(tls_running)
    context = client_context(ca=tls / "ca.pem", cert=rogue.cert, key=rogue.key)
    host, port = tls_running.mllp("secure")
    with pytest.raises((MLLPError, ssl.SSLError, ConnectionError)):
        async with MLLPClient.connect(host, port, ssl=context, timeout=10) as client:
            await client.send(adt("ROGUE"))
    assert rows(tls_running) == []


async def test_plain_tcp_to_a_tls_listener_gets_nothing_stored(tls_running: RunningDaemon) -> None:
    host, port = tls_running.mllp("secure")
    with pytest.raises((MLLPError, ConnectionError)):
        async with MLLPClient.connect(host, port, timeout=5) as client:
            await client.send(adt("PLAIN"))
    assert rows(tls_running) == []


async def test_python_hl7_client_is_acknowledged(running: RunningDaemon) -> None:
    host, port = running.mllp()

    def send() -> bytes:
        with hl7.client.MLLPClient(host, port) as client:
            answer: bytes = client.send_message(adt("THIRDPARTY").decode())
            return answer

    answer = await asyncio.to_thread(send)
    assert answer.startswith(b"\x0b") and answer.endswith(b"\x1c\r")
    ack = parse_ack(answer[1:-2])
    assert (ack.code, ack.control_id) == ("AA", "THIRDPARTY")
    assert [r[1] for r in rows(running)] == ["THIRDPARTY"]


async def test_python_hl7_mllp_send_command(running: RunningDaemon, tmp_path: Path) -> None:
    host, port = running.mllp()
    message = tmp_path / "one.mllp"
    message.write_bytes(encode_frame(adt("MLLPSEND")))  # mllp_send reads an MLLP stream
    mllp_send = Path(sys.executable).parent / "mllp_send"
    result = await asyncio.to_thread(
        subprocess.run, [str(mllp_send), "--port", str(port), "--file", str(message),
                         host], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "MSA|AA|MLLPSEND" in result.stdout
    assert [r[1] for r in rows(running)] == ["MLLPSEND"]


async def test_hie_edge_send_prints_each_ack(running: RunningDaemon, tmp_path: Path) -> None:
    host, port = running.mllp()
    messages = tmp_path / "two.hl7"
    messages.write_bytes(adt("S1").replace(b"\r", b"\n") + adt("S2").replace(b"\r", b"\n"))
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "edge", "send", str(messages), "--to",
                         f"{host}:{port}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["AA S1", "AA S2"]


async def test_hie_edge_send_to_a_closed_port_exits_69(tmp_path: Path) -> None:
    messages = tmp_path / "one.hl7"
    messages.write_bytes(adt("S1"))
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "edge", "send", str(messages), "--to",
                         "127.0.0.1:1", "--timeout", "5"], capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 69
    assert "Traceback" not in result.stderr


async def test_mllp_release_2_commit_acknowledgements(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst", replace={
            'ack = "on-commit"': 'ack = "on-commit"\ncommit_acks = true'}) as running:
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            answer = await client.send(adt("R2-1"))
        assert answer == b"\x06"  # <SB><ACK><EB><CR>: committed
        assert [r[1] for r in rows(running)] == ["R2-1"]


async def test_connection_limit_and_idle_timeout(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst", replace={
            'ack = "on-commit"': 'ack = "on-commit"\nmax_connections = 1\n'
                                 'idle_timeout_s = 0.3'}) as running:
        host, port = running.mllp()
        first_reader, first_writer = await asyncio.open_connection(host, port)
        first_writer.write(encode_frame(adt("LIM1")))
        await first_writer.drain()
        answer = await asyncio.wait_for(first_reader.readuntil(b"\x1c\r"), 10)
        assert b"MSA|AA|LIM1" in answer
        # A second connection while the first is open: closed without an answer.
        second_reader, second_writer = await asyncio.open_connection(host, port)
        second_writer.write(encode_frame(adt("LIM2")))
        assert await asyncio.wait_for(second_reader.read(), 10) == b""
        second_writer.close()
        # The first one, left idle, is closed by the daemon (EOF), not kept forever.
        assert await asyncio.wait_for(first_reader.read(), 10) == b""
        first_writer.close()
        metrics = running.daemon.metrics.refused.labels("adt", "connection-limit")._value.get()
        assert metrics == 1
        assert [r[1] for r in rows(running)] == ["LIM1"]
