"""The asyncio MLLP client against tiny in-test servers on 127.0.0.1 (port 0, no sleeps)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.mllp.client import (
    AckSummary,
    FramingError,
    InvalidAckError,
    MLLPClient,
    MLLPConnectionError,
    MLLPError,
    MLLPTimeoutError,
    PeerClosedError,
    parse_ack,
)
from adapters.mllp.framing import COMMIT_ACK, Frame, Framer, encode_frame, is_commit_ack
from edge.er7.header import Header
from edge.intake.ack import AckCode, AckError, ErrorCode, ErrorLocation, build_ack

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def message(control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|LAB|MAIN|EDGE|HIE|20240309140000||ADT^A01^ADT_A01|{control_id}|P|2.5\r"
        "PID|1||12345^^^MAIN^MR||Müller^Zoë\r"
    ).encode()


def control_id_of(payload: bytes) -> str:
    return payload.split(b"\r", 1)[0].split(b"|")[9].decode()


def simple_ack(payload: bytes, code: str = "AA") -> bytes:
    cid = control_id_of(payload)
    msh = f"MSH|^~\\&|EDGE|HIE|LAB|MAIN|20240309140001||ACK^A01^ACK|A{cid}|P|2.5"
    return f"{msh}\rMSA|{code}|{cid}\r".encode()


async def frames_of(reader: asyncio.StreamReader, framer: Framer) -> AsyncIterator[bytes]:
    """Frames from a connection until the peer closes."""
    while True:
        data = await reader.read(65536)
        if data:
            framer.feed(data)
        else:
            framer.feed_eof()
        for event in framer.events():
            if isinstance(event, Frame):
                yield event.payload
        if not data:
            return


async def echo_ack(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async for payload in frames_of(reader, Framer(1 << 20)):
        writer.write(encode_frame(simple_ack(payload)))
        await writer.drain()
    writer.close()


@asynccontextmanager
async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port


# --- sending ------------------------------------------------------------------------------


async def test_send_returns_the_ack_payload() -> None:
    async with serve(echo_ack) as port, MLLPClient.connect("127.0.0.1", port, timeout=5) as client:
        ack = await client.send(message("MSG-1"))
    assert ack == simple_ack(message("MSG-1"))
    summary = parse_ack(ack)
    assert summary == AckSummary(code="AA", control_id="MSG-1")
    assert summary.accepted


async def test_send_many_pipelines_and_keeps_order() -> None:
    count = 300
    received: list[str] = []

    async def answer_only_when_all_arrived(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # A client that waited for each ACK before sending the next would never get one.
        pending: list[bytes] = []
        async for payload in frames_of(reader, Framer(1 << 20)):
            received.append(control_id_of(payload))
            pending.append(payload)
            if len(pending) == count:
                writer.write(b"".join(encode_frame(simple_ack(p)) for p in pending))
                await writer.drain()
        writer.close()

    ids = [f"MSG-{i:04d}" for i in range(count)]
    async with (
        serve(answer_only_when_all_arrived) as port,
        MLLPClient.connect("127.0.0.1", port, timeout=10) as client,
    ):
        acks = await client.send_many(message(i) for i in ids)
    assert received == ids
    assert [parse_ack(a).control_id for a in acks] == ids


async def test_answers_in_tiny_pieces_with_garbage_between() -> None:
    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for payload in frames_of(reader, Framer(1 << 20)):
            wire = b"\r\n" + encode_frame(simple_ack(payload))
            for i in range(len(wire)):
                writer.write(wire[i : i + 1])
                await writer.drain()
        writer.close()

    async with serve(dribble) as port, MLLPClient.connect("127.0.0.1", port, timeout=5) as client:
        acks = await client.send_many([message("A"), message("B")])
        assert [parse_ack(a).control_id for a in acks] == ["A", "B"]
        assert client.garbage_bytes == 4


async def test_concurrent_sends_on_one_client_each_get_their_own_answer() -> None:
    async with serve(echo_ack) as port, MLLPClient.connect("127.0.0.1", port, timeout=5) as client:
        acks = await asyncio.gather(*(client.send(message(f"C{i}")) for i in range(20)))
    assert [parse_ack(a).control_id for a in acks] == [f"C{i}" for i in range(20)]


async def test_commit_ack_of_mllp_release_2_is_returned_as_is() -> None:
    async def release_2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in frames_of(reader, Framer(1 << 20)):
            writer.write(COMMIT_ACK)
            await writer.drain()
        writer.close()

    async with serve(release_2) as port, MLLPClient.connect("127.0.0.1", port, timeout=5) as client:
        assert is_commit_ack(await client.send(message("R2")))


async def test_connect_block_closes_the_connection() -> None:
    saw_eof = asyncio.Event()

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.read() == b""
        saw_eof.set()
        writer.close()

    async with serve(watch) as port:
        async with MLLPClient.connect("127.0.0.1", port, timeout=5) as client:
            pass
        await asyncio.wait_for(saw_eof.wait(), 5)
    with pytest.raises(MLLPConnectionError, match="closed"):
        await client.send(message("late"))


async def test_message_with_block_bytes_is_refused_before_sending() -> None:
    async with serve(echo_ack) as port, MLLPClient.connect("127.0.0.1", port, timeout=5) as client:
        with pytest.raises(ValueError):
            await client.send(b"MSH|\x1c\r")
        # Nothing was sent, so the connection is still good.
        assert parse_ack(await client.send(message("ok"))).control_id == "ok"


# --- failures -----------------------------------------------------------------------------


async def test_timeout_when_the_server_never_answers() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes away
        writer.close()

    async with serve(silent) as port, MLLPClient.connect("127.0.0.1", port, timeout=0.2) as client:
        with pytest.raises(MLLPTimeoutError) as caught:
            await client.send_many([message("T1"), message("T2")])
        assert caught.value.stage == "ack"
        assert caught.value.pending == 2
        assert caught.value.retriable
        assert isinstance(caught.value, TimeoutError)
        assert "T1" not in str(caught.value)  # control ids of the payload are not echoed
        # Answers still owed may arrive late: the connection must not be reused.
        with pytest.raises(MLLPConnectionError, match="unusable"):
            await client.send(message("T3"))


async def test_peer_closing_with_answers_owed() -> None:
    async def answer_one_then_hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        framer = Framer(1 << 20)
        async for payload in frames_of(reader, framer):
            writer.write(encode_frame(simple_ack(payload)))
            await writer.drain()
            break
        writer.close()

    async with (
        serve(answer_one_then_hang_up) as port,
        MLLPClient.connect("127.0.0.1", port, timeout=5) as client,
    ):
        with pytest.raises(PeerClosedError) as caught:
            await client.send_many([message("P1"), message("P2"), message("P3")])
        assert caught.value.pending == 2
        assert caught.value.retriable


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"\x0bMSH|^~\\&|half an ACK", "cut short"),  # then the server hangs up
        (encode_frame(b"A" * 5000), "limit"),
    ],
)
async def test_broken_answers_are_framing_errors(answer: bytes, match: str) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in frames_of(reader, Framer(1 << 20)):
            writer.write(answer)
            await writer.drain()
            break
        writer.close()

    async with (
        serve(broken) as port,
        MLLPClient.connect("127.0.0.1", port, timeout=5, max_frame_bytes=1000) as client,
    ):
        with pytest.raises(FramingError, match=match) as caught:
            await client.send(message("F1"))
        assert caught.value.fault == "peer"


async def test_connection_refused_is_a_retriable_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    with pytest.raises(MLLPConnectionError) as caught:
        await MLLPClient.open("127.0.0.1", port, timeout=5)
    assert caught.value.retriable
    assert isinstance(caught.value, MLLPError)


# --- TLS ----------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mllp-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_send_over_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with (
        serve(echo_ack, server_context) as port,
        MLLPClient.connect("127.0.0.1", port, ssl=client_context, timeout=5) as client,
    ):
        assert parse_ack(await client.send(message("TLS-1"))).control_id == "TLS-1"


async def test_tls_with_an_untrusted_server_fails_cleanly(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    async with serve(echo_ack, server_context) as port:
        with pytest.raises(MLLPConnectionError, match="SSL"):
            await MLLPClient.open("127.0.0.1", port, ssl=ssl.create_default_context(), timeout=5)


# --- parse_ack ----------------------------------------------------------------------------


def _header(version: str) -> Header:
    return Header(
        field_separator="|",
        encoding_characters="^~\\&",
        sending_application="LAB",
        sending_facility="MAIN",
        receiving_application="EDGE",
        receiving_facility="HIE",
        message_datetime="20240309140000",
        message_code="ADT",
        trigger_event="A01",
        message_structure="ADT_A01",
        control_id="MSG-9",
        processing_id="P",
        version_id=version,
        accept_ack_type="",
        application_ack_type="",
        character_sets=(),
        codec="utf-8",
    )


@pytest.mark.parametrize("version", ["2.3", "2.5"])
def test_parse_ack_reads_what_build_ack_writes(version: str) -> None:
    errors = [
        AckError(ErrorCode.REQUIRED_FIELD_MISSING, location=ErrorLocation("PID", field=3)),
        AckError(ErrorCode.APPLICATION_INTERNAL_ERROR),
    ]
    ack = build_ack(
        _header(version),
        AckCode.AE,
        control_id="A1",
        now=dt.datetime(2024, 3, 9, 14, 0, 1),
        errors=errors,
        text="PID-3 | missing ^ here",
    )
    summary = parse_ack(ack)
    assert summary.code == "AE"
    assert summary.control_id == "MSG-9"
    assert summary.text == "PID-3 | missing ^ here"
    assert summary.err_codes == ("101", "207")
    assert not summary.accepted


def test_parse_ack_accepts_lf_endings_latin_1_and_hides_text_in_repr() -> None:
    ack = "MSH|^~\\&|A|B|C|D|T||ACK|1|P|2.4\nMSA|CE|X-1|Prüfung fehlgeschlagen\n".encode("latin-1")
    summary = parse_ack(ack)
    assert (summary.code, summary.control_id, summary.text) == (
        "CE",
        "X-1",
        "Prüfung fehlgeschlagen",
    )
    assert "Prüfung" not in repr(summary)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x06", b"PID|1\r", b"MSH|^~\\&|A|B\rPID|1\r", b"MSH|^~\\&|A\rMSA||X\r"],
)
def test_parse_ack_rejects_what_is_not_an_ack(payload: bytes) -> None:
    with pytest.raises(InvalidAckError):
        parse_ack(payload)
