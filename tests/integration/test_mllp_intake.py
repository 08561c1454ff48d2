"""MLLP intake against the real daemon on loopback: ACK rules, duplicates, bad frames,
batches, limits. Every message here is on disk before its AA/CA."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from adapters.mllp.client import MLLPClient, parse_ack
from adapters.mllp.framing import encode_frame
from edge.inbox.schema import TABLE
from tests.corpus import iter_single_messages
from tests.integration.conftest import RunningDaemon, daemon_with

ADT = (b"MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|HIE|EDGE|202601011200||ADT^A01^ADT_A01|MSG00001"
       b"|P|2.5.1\r"
       b"EVN|A01|202601011200\r"
       b"PID|1||PATID1234^^^HOSP^MR||JONES^WILLIAM^A||19610615|M\r"
       b"PV1|1|I|2000^2012^01\r")


def adt(control_id: str, version: str = "2.5.1", extra: bytes = b"", msh15: str = "") -> bytes:
    msg = ADT.replace(b"MSG00001", control_id.encode())
    msg = msg.replace(b"|2.5.1\r", f"|{version}\r".encode())
    if msh15:
        msg = msg.replace(f"|P|{version}\r".encode(), f"|P|{version}|||{msh15}|AL\r".encode())
    return msg + extra


def rows(running: RunningDaemon) -> list[tuple[int, str, str, str]]:
    path = running.settings.storage.dir / "edge.db"
    with sqlite3.connect(path) as conn:
        query = f"SELECT id, control_id, state, ack_code FROM {TABLE} ORDER BY id"
        return conn.execute(query).fetchall()


def naive_msh(raw: bytes, n: int) -> str:
    """MSH-n by plain splitting: an oracle independent of our header parser."""
    text = raw.decode("latin-1").lstrip("\ufeff\xef\xbb\xbf \r\n\t")
    first = text.replace("\r\n", "\r").replace("\n", "\r").split("\r", 1)[0]
    fields = first.split(first[3]) if len(first) > 3 else []
    return fields[n - 1].strip() if len(fields) > n - 1 else ""


def _expects_answer(raw: bytes) -> bool:
    # HL7 table 0155 in MSH-15: NE never, ER only for errors (v2.5 section 2.9.3).
    return naive_msh(raw, 15) not in ("NE", "ER")


async def test_every_corpus_message_gets_the_right_msa2(running: RunningDaemon,
                                                        corpora_dir: Path) -> None:
    messages = iter_single_messages(corpora_dir)
    assert len(messages) > 900
    host, port = running.mllp()
    answered = [(name, raw) for name, raw in messages if _expects_answer(raw)]
    accepted = rejected = 0
    async with MLLPClient.connect(host, port, timeout=30) as client:
        answers = await client.send_many(raw for _, raw in answered)
    for (name, raw), answer in zip(answered, answers, strict=True):
        ack = parse_ack(answer)
        assert ack.code in ("AA", "AR", "CA", "CR"), name
        if ack.code in ("AA", "CA"):
            accepted += 1
            assert ack.control_id == naive_msh(raw, 10), name
        else:
            rejected += 1
            # A reject still names the message when its MSH-10 could be read at all.
            assert ack.control_id in ("", naive_msh(raw, 10)), name
            assert ack.err_codes, name
    assert accepted > 600 and rejected > 0
    stored_ids = {r[1] for r in rows(running) if r[3] in ("AA", "CA")}
    assert {naive_msh(raw, 10) for _, raw in answered if raw} >= stored_ids


async def test_corpus_messages_that_ask_for_no_accept_ack(running: RunningDaemon,
                                                          corpora_dir: Path) -> None:
    """MSH-15 NE/ER: no answer for an accepted message, yet it is stored. Each is followed by
    a sentinel on the same connection, so what answers it (if anything) is unambiguous."""
    quiet = [(n, r) for n, r in iter_single_messages(corpora_dir) if not _expects_answer(r)]
    assert len(quiet) > 50
    host, port = running.mllp()
    reader, writer = await asyncio.open_connection(host, port)
    for index, (_, raw) in enumerate(quiet):
        writer.write(encode_frame(raw) + encode_frame(adt(f"SENTINEL-{index}")))
    await writer.drain()
    answers: list[list[str]] = [[] for _ in quiet]
    buffer, index = b"", 0
    while index < len(quiet):
        buffer += await asyncio.wait_for(reader.read(65536), 30)
        while b"\x1c\r" in buffer:
            frame, _, buffer = buffer.partition(b"\x1c\r")
            ack = parse_ack(frame.lstrip(b"\x0b"))
            if ack.control_id == f"SENTINEL-{index}":
                index += 1
            else:
                answers[index].append(ack.code)
    writer.close()
    stored = {r[1] for r in rows(running)}
    for (name, raw), got in zip(quiet, answers, strict=True):
        if naive_msh(raw, 15) == "NE":
            assert got == [], name
        else:
            assert got in ([], ["AR"], ["CR"]), name
        if not got:
            assert naive_msh(raw, 10) in stored, name


async def test_duplicate_gets_the_stored_ack_and_no_second_row(running: RunningDaemon) -> None:
    host, port = running.mllp()
    async with MLLPClient.connect(host, port) as client:
        first = await client.send(adt("DUP1"))
        second = await client.send(adt("DUP1"))
        changed = await client.send(adt("DUP1", extra=b"NTE|1||changed\r"))
    assert first == second
    assert parse_ack(changed).code == "AA"
    assert parse_ack(changed).control_id == "DUP1"
    assert [r[1] for r in rows(running)] == ["DUP1", "DUP1"]
    path = running.settings.storage.dir / "edge.db"
    with sqlite3.connect(path) as conn:
        flags = [f for (f,) in conn.execute(f"SELECT flags FROM {TABLE} ORDER BY id")]
    assert flags == ["", "control-id-reused"]
    status = await running.daemon.status()
    assert status["inbox"]["duplicates"] == 1


async def test_enhanced_mode_answers_ca(running: RunningDaemon) -> None:
    host, port = running.mllp()
    async with MLLPClient.connect(host, port) as client:
        ack = parse_ack(await client.send(adt("ENH1", msh15="AL")))
    assert (ack.code, ack.control_id) == ("CA", "ENH1")


async def test_unsupported_version_is_rejected_and_dead_lettered(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst", replace={
        'ack = "on-commit"': 'ack = "on-commit"\nversions = ["2.5.1"]'}) as running:
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            ack = parse_ack(await client.send(adt("V1", version="2.3")))
            ok = parse_ack(await client.send(adt("V2")))
        # v2.3 carries the code in ERR-1 (ELD), not ERR-3.
        assert (ack.code, ack.control_id, ack.err_codes) == ("AR", "V1", ("203",))
        assert ok.code == "AA"
        assert [(r[1], r[2]) for r in rows(running)] == [("V1", "dead-letter"), ("V2", "received")]


async def test_garbage_oversize_and_truncated_frames_keep_the_connection_usable(
        tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst", replace={
        'ack = "on-commit"': 'ack = "on-commit"\nmax_frame_bytes = 4096'}) as running:
        host, port = running.mllp()
        reader, writer = await asyncio.open_connection(host, port)
        big = adt("BIG", extra=b"NTE|1||" + b"x" * 8000 + b"\r")
        # Garbage before a frame, a truncated frame (restarted by a new SB), an oversize frame,
        # then a good frame: three answers, in order.
        writer.write(b"noise\r\n" + b"\x0bMSH|^~\\&|half" + encode_frame(adt("G1"))
                     + encode_frame(big) + encode_frame(adt("G2")))
        await writer.drain()
        answers = []
        buffer = b""
        while len(answers) < 3:
            buffer += await asyncio.wait_for(reader.read(65536), 10)
            while b"\x1c\r" in buffer:
                frame, _, buffer = buffer.partition(b"\x1c\r")
                answers.append(parse_ack(frame.lstrip(b"\x0b")))
        writer.close()
        assert [(a.code, a.control_id) for a in answers] == [("AA", "G1"), ("AR", ""), ("AA", "G2")]
        assert answers[1].err_codes == ("207",)
        assert [r[1] for r in rows(running)] == ["G1", "G2"]


async def test_unreadable_header_is_dead_lettered_with_reason(running: RunningDaemon) -> None:
    host, port = running.mllp()
    bad = b"MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\rPID|1\r"  # MSH-10 empty
    async with MLLPClient.connect(host, port) as client:
        ack = parse_ack(await client.send(bad))
        good = parse_ack(await client.send(adt("AFTER")))
    assert ack.code == "AR" and ack.err_codes == ("101",)
    assert good.code == "AA"
    stored = rows(running)
    assert stored[0][2] == "dead-letter" and stored[0][3] == "AR"


async def test_batch_is_stored_per_message_with_one_batch_response(running: RunningDaemon) -> None:
    host, port = running.mllp()
    block = (b"FHS|^~\\&|LAB|HOSP|HIE|EDGE|2026\rBHS|^~\\&|LAB|HOSP|HIE|EDGE|2026||||B1\r"
             + adt("B-1") + adt("B-2") + b"BTS|2\rFTS|1\r")
    async with MLLPClient.connect(host, port) as client:
        answer = await client.send(block)
    text = answer.decode()
    segments = text.strip("\r").split("\r")
    assert segments[0].startswith("FHS|") and segments[1].startswith("BHS|")
    assert segments[-2:] == ["BTS|2", "FTS|1"]
    msa = [s for s in segments if s.startswith("MSA|")]
    assert msa == ["MSA|AA|B-1", "MSA|AA|B-2"]
    assert segments[1].split("|")[11] == "B1"  # BHS-12 names the received batch
    assert [r[1] for r in rows(running)] == ["B-1", "B-2"]


QBP = (b"MSH|^~\\&|IIS|ST|EHR|CL|20260101||QBP^Q11^QBP_Q11|Q1|P|2.5.1\r"
       b"QPD|Z34^Request Immunization History^CDCPHINVS|Q1\r")


async def test_on_processed_answers_after_conversion(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst",
                           replace={'ack = "on-commit"': 'ack = "on-processed"'}) as running:
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            good = parse_ack(await client.send(adt("P1")))
            bad = parse_ack(await client.send(adt("P2", extra=b"p!d|bad segment id\r")))
            unsupported = parse_ack(await client.send(QBP))
            again = parse_ack(await client.send(adt("P2", extra=b"p!d|bad segment id\r")))
        assert good.code == "AA"
        assert bad.code == "AE" and bad.control_id == "P2" and bad.err_codes == ("102",)
        assert (unsupported.code, unsupported.err_codes) == ("AE", ("200",))
        assert again == bad  # a duplicate gets the application ACK the first copy got
        assert [(r[1], r[2], r[3]) for r in rows(running)] == [
            ("P1", "processed", "AA"), ("P2", "dead-letter", "AE"), ("Q1", "unsupported", "AE")]
        status = await running.daemon.status()
        assert status["processing"]["processed"] == 1
        assert status["ledger"]["log_size"] > 1  # P1's resources are leaves


async def test_commit_failure_answers_ar_207_and_recovers(running: RunningDaemon) -> None:
    host, port = running.mllp()
    committer = running.daemon._committer
    assert committer is not None

    def fill_disk(conn: sqlite3.Connection) -> None:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

    async with MLLPClient.connect(host, port) as client:
        await client.send(adt("D0"))
        await committer.run(fill_disk)
        # Large enough to need new pages: the database is "full".
        full = parse_ack(await client.send(adt("D1", extra=b"NTE|1||" + b"y" * 20000 + b"\r")))
        await committer.run(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
        again = parse_ack(await client.send(adt("D1", extra=b"NTE|1||" + b"y" * 20000 + b"\r")))
    assert (full.code, full.control_id, full.err_codes) == ("AR", "D1", ("207",))
    assert again.code == "AA"
    assert [r[1] for r in rows(running)] == ["D0", "D1"]


async def test_allowlist_refuses_other_sources(tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "inst", replace={
        'ack = "on-commit"': 'ack = "on-commit"\nallow = ["10.0.0.0/8"]'}) as running:
        host, port = running.mllp()
        with pytest.raises(Exception):  # noqa: B017 - closed without an answer
            async with MLLPClient.connect(host, port, timeout=5) as client:
                await client.send(adt("X"))
        assert rows(running) == []


async def test_connections_in_parallel_keep_their_order(running: RunningDaemon) -> None:
    host, port = running.mllp()

    async def one(conn: int) -> list[str]:
        async with MLLPClient.connect(host, port) as client:
            answers = await client.send_many(adt(f"C{conn}-{i}") for i in range(50))
        return [parse_ack(a).control_id for a in answers]

    results = await asyncio.gather(*(one(c) for c in range(8)))
    for conn, ids in enumerate(results):
        assert ids == [f"C{conn}-{i}" for i in range(50)]
    assert len(rows(running)) == 400
