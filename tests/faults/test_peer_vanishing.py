"""A peer vanishing mid-query (issue 11): ``hie-edge peer query`` asks members concurrently;
one of them goes away while it answers. Whatever the way it goes, the query ends within its
timeout with that member reported as failed (a reason, no traceback, no hang), nothing from
its unfinished answer counted as verified, and the other member's records found and verified.

The consortium, all on loopback with real mutual TLS: A asks; C is a real daemon that answers
normally; B is a real daemon *in another process* (the only kind SIGKILL can test) reached
through :class:`Relay`, a TCP relay that passes the TLS bytes through untouched and, when
armed, injects the fault at a byte offset of one of B's answers:

(a) SIGKILL of B in the middle of its first ``$everything`` page (the CLI, in its own
    process, asks B and C);
(b) members that accept the connection and then never answer: a TCP server that reads and
    stays silent (the TLS handshake never completes), and a TLS server with a member's
    certificate that answers discovery, then sends half a page and stalls;
(c) B's connection reset (RST) in the middle of its *second* page, after its first page
    arrived and verified: the incomplete answer verifies nothing.

After each, the querying side is checked unchanged (records, audit trail, database
integrity) and the vanished side is checked sound (B answers in full after the reset; after
the kill, B's database passes ``integrity_check`` and its audit trail holds the disclosure it
was making when it died). Figures go to the fault-figures file (``support.record_figures``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.mllp.client import MLLPClient, parse_ack
from adapters.peer.client import PeerClient
from adapters.peer.tls import client_context, server_context
from edge.cli.audit import add_parser as add_audit_parser
from edge.cli.audit import run_audit
from edge.cli.exits import OK, UNAVAILABLE
from edge.config import Settings, load_config
from edge.devca import IssuedCert, create_ca, issue
from edge.inbox.schema import TABLE as INBOX
from edge.peer.query import PAGE_SIZE, CheckpointRoots, PeerOutcome, QuerySpec, query_peers
from edge.storage.database import connect, database_path
from ledger_client.checkpoint import NoteSigner
from tests.faults.support import (
    descendants,
    end,
    integrity_check,
    record_figures,
    wait_settled,
)
from tests.integration.conftest import (
    DaemonProcess,
    NotifySocket,
    RunningDaemon,
    make_instance,
    start_daemon,
)
from tests.integration.test_peer import (
    ADT,
    ORU,
    PATIENT,
    SYSTEM,
    anchor,
    asker,
    fingerprint,
    ingest,
    make_crl,
    peer_toml,
    vkey,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

B_REPORTS = 70  # ORUs at B: ~140 clinical entries: two pages of _count=100 (test c asks so)
# Bytes into an answer where it is cut: past its first TLS records (at most 16 KiB of
# plaintext each, RFC 8446 section 5.1), so the client has the HTTP head and part of the
# body; only $everything pages are this long (a page of 100 entries is ~180 KB, the second
# page ~80 KB; discovery and checkpoint answers are under 4 KB).
CUT_AT = 40 * 1024
TIMEOUT_S = 20.0  # the query's timeout where nothing is meant to hang
HANG_TIMEOUT_S = 6.0  # where members hang: the timeout is what ends their wait


# -- the relay in front of B ---------------------------------------------------------------

@dataclass(frozen=True)
class Cut:
    """Where to break B's answers: the ``answer``-th answer (counting only answers longer
    than ``at`` bytes) after ``at`` of its bytes have been passed on, and how."""

    answer: int
    at: int
    action: Literal["kill", "reset"]


def https_url(server: asyncio.Server) -> str:
    return f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a host does for a connection it tears down."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Relay:
    """A TCP relay on loopback in front of a member's peer port. The TLS session is between
    the client and the member (the relay holds no key and decrypts nothing); the relay
    only sees *when* bytes flow. It counts the member's bytes since the client last sent
    something -- one answer -- which is how an armed :class:`Cut` finds the middle of a
    ``$everything`` page without decrypting anything.

    On ``kill`` it forwards the answer up to the cut, SIGKILLs the member (``on_kill``), then
    delivers nothing more of it and closes the client's side the way the dead member's side
    closed (FIN, or RST): what the client sees is the member dying at that byte. On
    ``reset`` it resets both sides at the cut. While the member's port is closed, a client
    connection is reset (as a closed port would refuse it)."""

    def __init__(self) -> None:
        self.target: tuple[str, int] | None = None
        self.cut: Cut | None = None
        self.on_kill: Callable[[], Awaitable[None]] | None = None
        self.faults = 0
        self.connections = 0
        self.answer_sizes: list[int] = []  # bytes of each answer relayed (diagnostics)
        self._long_answers = 0
        self._server: asyncio.Server | None = None
        self.url = ""

    def arm(self, cut: Cut) -> None:
        self.cut, self._long_answers, self.faults = cut, 0, 0
        self.answer_sizes.clear()

    def disarm(self) -> None:
        self.cut = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = https_url(self._server)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.target is None:
                raise ConnectionRefusedError
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(client_w)
            return
        answer = [0]  # the member's bytes since the client last sent

        async def requests() -> None:
            while data := await client_r.read(65536):
                if answer[0]:
                    self.answer_sizes.append(answer[0])
                answer[0] = 0
                up_w.write(data)
                await up_w.drain()
            up_w.write_eof()

        async def answers() -> None:
            while data := await up_r.read(65536):
                before = answer[0]
                answer[0] += len(data)
                cut = self.cut
                if cut is not None and before < cut.at <= answer[0]:
                    self._long_answers += 1
                    if self._long_answers == cut.answer:
                        client_w.write(data[:cut.at - before])
                        await client_w.drain()
                        await self._fault(cut, client_w, up_r, up_w)
                        return
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        pumps = [asyncio.create_task(requests()), asyncio.create_task(answers())]
        try:
            # Either direction ending (EOF, reset, the fault) ends the relay of this
            # connection once the other has nothing left to pass.
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for writer in (client_w, up_w):
                writer.close()

    async def _fault(self, cut: Cut, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:
        self.faults += 1
        if cut.action == "reset":
            _reset(client_w)
            _reset(up_w)
            return
        assert self.on_kill is not None
        await self.on_kill()
        how_it_closed = "fin"
        try:
            while await up_r.read(65536):
                pass  # what the member had written before it died: not delivered
        except ConnectionResetError:
            how_it_closed = "rst"
        if how_it_closed == "rst":
            _reset(client_w)
        else:
            client_w.close()


# -- members that accept and never answer ------------------------------------------------

class SilentServer:
    """Accepts TCP connections, reads whatever comes, never writes a byte."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = https_url(self._server)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        writer.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()


class HalfAnswerServer:
    """A member's TLS endpoint (a certificate the consortium CA signed, client certificates
    required) that answers discovery with one Patient, then sends the headers and half the
    body of the ``$everything`` page and stalls until closed."""

    def __init__(self, cert: IssuedCert, ca: IssuedCert) -> None:
        self._context = server_context(cert=cert.cert, key=cert.key, ca=ca.cert)
        self.stalled = 0
        self._closing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0,
                                                  ssl=self._context)
        self.url = https_url(self._server)

    @staticmethod
    def _head(length: int) -> bytes:
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                b"Content-Length: %d\r\n\r\n" % length)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if b"$everything" not in path:
                    body = json.dumps({"resourceType": "Bundle", "type": "searchset",
                                       "total": 1, "entry": [{"resource": {
                                           "resourceType": "Patient", "id": "p1"}}]}).encode()
                    writer.write(self._head(len(body)) + body)
                    await writer.drain()
                    continue
                body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [
                    {"resource": {"resourceType": "Observation", "id": f"o{n}"}}
                    for n in range(40)]}).encode()
                writer.write(self._head(len(body)) + body[:len(body) // 2])
                await writer.drain()
                self.stalled += 1
                await self._closing.wait()
                return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return
        finally:
            writer.close()

    async def aclose(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()


# -- the consortium --------------------------------------------------------------------------

def _replace(facility: str, **more: str) -> dict[str, str]:
    # As tests/integration/test_peer.instance(), plus ``more``.
    return {'id = "dev-facility"': f'id = "{facility}"',
            'ack = "on-commit"': 'ack = "on-processed"',
            '# HOSP = "urn:oid:2.16.840.1.113883.3.1234"': f'HOSP = "{SYSTEM}"', **more}


def _fake_vkey(facility: str) -> str:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    return NoteSigner.from_pem(f"hie-edge/{facility}", pem).verifier.vkey()


@dataclass
class Consortium:
    root: Path
    ca: IssuedCert
    certs: dict[str, IssuedCert]
    a: RunningDaemon
    c: RunningDaemon
    b_config: Path
    b_settings: Settings
    b: DaemonProcess
    relay: Relay
    silent: SilentServer
    half: HalfAnswerServer
    b_workers: list[int] = field(default_factory=list)

    async def kill_b(self) -> None:
        """SIGKILL B (no shutdown path runs) and wait until it is gone."""
        self.b_workers.extend(descendants(self.b.proc.pid))
        self.b.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.b.proc.wait, 30)
        # Its worker processes outlive a SIGKILL (test_orphans.py): end them too.
        end(self.b_workers)


async def ingest_at(host: str, port: int, reports: int) -> None:
    """The patient's admission and ``reports`` lab results, through MLLP (on-processed:
    stored and in the Merkle log when answered)."""
    messages = [ADT.replace(b"{id}", b"ADT1")]
    messages += [ORU.replace(b"{id}", f"ORU{n}".encode()).replace(b"{n}", str(90 + n).encode())
                 for n in range(reports)]
    async with MLLPClient.connect(host, port) as client:
        answers = await client.send_many(messages)
    assert {parse_ack(a).code for a in answers} == {"AA"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def consortium(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Consortium]:
    root = tmp_path_factory.mktemp("vanishing")
    tls = root / "consortium"
    tls.mkdir()
    ca = create_ca(tls, name="consortium")
    certs = {n: issue(ca, tls, n, common_name=n) for n in ("a", "b", "c", "d", "s", "revoked")}
    make_crl(ca, certs["revoked"], tls / "ca.crl")
    relay, silent, half = Relay(), SilentServer(), HalfAnswerServer(certs["d"], ca)
    for server in (relay, silent, half):
        await server.start()
    notify_path = root / "notify.sock"
    notify = NotifySocket(notify_path, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
    notify.sock.bind(str(notify_path))

    a_config = make_instance(root / "a", replace=_replace("a"))
    a_entry = [("a", "https://127.0.0.1:9", fingerprint(certs["a"]), vkey(root / "a", "a"))]
    # B: in its own process, anchoring every half second (its checkpoints are not made
    # from here), permitting treatment by default.
    b_config = make_instance(root / "b", peer_toml("b", tls, a_entry,
                                                   default="permit-treatment"),
                             replace=_replace("b", **{
                                 "anchor_interval_s = 10": "anchor_interval_s = 0.5"}))
    c_config = make_instance(root / "c", peer_toml("c", tls, a_entry,
                                                   default="permit-treatment"),
                             replace=_replace("c"))
    b = DaemonProcess(b_config, notify)
    running: list[RunningDaemon] = []
    try:
        c = await start_daemon(c_config)
        running.append(c)
        with a_config.open("a") as f:
            f.write(peer_toml("a", tls, [
                ("b", relay.url, fingerprint(certs["b"]), vkey(root / "b", "b")),
                ("c", "https://" + c.daemon.bound["peer"][0], fingerprint(certs["c"]),
                 vkey(root / "c", "c")),
                ("d", half.url, fingerprint(certs["d"]), _fake_vkey("d")),
                ("s", silent.url, fingerprint(certs["s"]), _fake_vkey("s"))], default="deny"))
        a = await start_daemon(a_config)
        running.append(a)
        await asyncio.to_thread(b.wait_ready)
        listeners = b.runtime()["listeners"]
        assert isinstance(listeners, dict)
        host, _, port = listeners["peer"][0].rpartition(":")
        relay.target = (host.strip("[]"), int(port))
        admin = b.runtime()["admin"]
        assert isinstance(admin, list)

        async def b_ready() -> None:  # B anchors on its own timer: wait for its /status
            await ingest_at(*b.mllp(), B_REPORTS)
            await wait_settled(f"http://{admin[0]}", timeout=60)

        async def in_process(running: RunningDaemon, reports: int) -> None:
            await ingest(running, reports)
            await anchor(running)

        # At once: each daemon's processing runs in worker processes of its own.
        await asyncio.gather(b_ready(), in_process(c, 3),
                             in_process(a, 2))  # A's own records of the patient
        consortium = Consortium(root, ca, certs, a, c, b_config, load_config(b_config), b,
                                relay, silent, half)
        relay.on_kill = consortium.kill_b
        yield consortium
    finally:
        if b.proc.poll() is None:
            workers = descendants(b.proc.pid)
            assert b.stop() == 0, b.log()[-2000:]
            end(workers)
        for daemon in running:
            if not daemon.task.done():
                assert await daemon.stop() == 0
        for server in (relay, silent, half):
            await server.aclose()
        notify.sock.close()


# -- helpers -----------------------------------------------------------------------------------

async def ask(c: Consortium, peers: list[str], *, timeout_s: float, page_size: int = PAGE_SIZE,
              ) -> tuple[dict[str, PeerOutcome], float]:
    """A's ``peer query`` through the library call behind the CLI; the outcomes by member,
    and the seconds it took (a figure, never asserted)."""
    chosen, creds = asker(c.a.settings, c.certs["a"].cert, peers)
    spec = QuerySpec(PATIENT, "TREAT", "dr-who", "physician", page_size=page_size)
    context = client_context(cert=c.certs["a"].cert, key=c.certs["a"].key, ca=c.ca.cert)
    started = time.monotonic()
    async with PeerClient(context, timeout_s=timeout_s) as client:
        outcomes = await asyncio.wait_for(
            query_peers(chosen, spec, client=client, creds=creds, roots=CheckpointRoots(),
                        timeout_s=timeout_s), timeout_s + 30)  # a hang fails, not stalls
    return {o.peer: o for o in outcomes}, time.monotonic() - started


async def peer_query_cli(c: Consortium, *peers: str) -> tuple[int, list[dict[str, Any]], str,
                                                              float]:
    """``hie-edge peer query`` in its own process: exit status, JSON report, stderr,
    seconds."""
    argv = [sys.executable, "-m", "edge", "peer", "query", "--config",
            str(c.a.daemon.config_path), "--patient", PATIENT, "--purpose", "TREAT",
            "--timeout", str(TIMEOUT_S), "--json"]
    for peer in peers:
        argv += ["--peer", peer]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    elapsed = time.monotonic() - started
    assert proc.returncode is not None
    report: list[dict[str, Any]] = json.loads(out) if out.strip() else []
    return proc.returncode, report, err.decode(errors="replace"), elapsed


def audit_trail(settings: Settings) -> list[dict[str, Any]]:
    """``hie-edge audit --patient P --json`` for the facility of ``settings``."""
    parser = argparse.ArgumentParser()

    def config_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config")

    add_audit_parser(parser.add_subparsers(dest="command"), argparse.ArgumentParser,
                     config_option)
    args = parser.parse_args(["audit", "--patient", PATIENT, "--json"])
    out = io.StringIO()
    with redirect_stdout(out):
        assert run_audit(args, settings) == 0
    trail: list[dict[str, Any]] = json.loads(out.getvalue())
    return trail


@dataclass(frozen=True)
class FacilityState:
    """What must not change on the querying side when a member vanishes."""

    stored: dict[str, int]  # resource rows (versions) by type
    inbox: int
    trail: list[dict[str, Any]]  # the patient's audit trail (summaries)
    integrity: list[str]


async def state_of(running: RunningDaemon) -> FacilityState:
    def read() -> FacilityState:
        db = database_path(running.settings.storage.dir)
        conn = connect(db, readonly=True)
        try:
            stored = dict(conn.execute("SELECT type, count(*) FROM resources GROUP BY type"))
            (inbox,) = conn.execute(f"SELECT count(*) FROM {INBOX}").fetchone()
        finally:
            conn.close()
        return FacilityState(stored, int(inbox), audit_trail(running.settings),
                             integrity_check(db))

    return await asyncio.to_thread(read)


def assert_unchanged(before: FacilityState, after: FacilityState) -> None:
    """The querying facility's data is as it was: the same records, the same audit trail.
    The one difference is the trail having been read (``hie-edge audit`` audits itself,
    after its listing): one AuditEvent more, an ``admin-read``."""
    assert after.integrity == before.integrity == ["ok"]
    assert after.inbox == before.inbox
    assert after.stored == {**before.stored,
                            "AuditEvent": before.stored.get("AuditEvent", 0) + 1}
    assert after.trail[:len(before.trail)] == before.trail
    assert [e["event"] for e in after.trail[len(before.trail):]] == ["admin-read"]


def assert_answered(outcome: PeerOutcome | dict[str, Any]) -> None:
    """The member that did not vanish: every record it sent found and verified."""
    o = outcome if isinstance(outcome, dict) else outcome.to_json()
    assert (o["status"], o["failures"]) == ("ok", []), o
    assert o["found"] == o["verified"] > 0, o


# -- the tests -------------------------------------------------------------------------------

async def test_reset_mid_body_of_the_second_page_verifies_nothing_of_that_member(
        consortium: Consortium) -> None:
    c = consortium
    before = await state_of(c.a)
    # Unarmed, B's answer in pages of 100 is two pages (so the cut below lands in the second).
    full, _ = await ask(c, ["b"], timeout_s=TIMEOUT_S, page_size=100)
    assert_answered(full["b"])
    assert full["b"].found > 100, "B's $everything must be more than one page"

    c.relay.arm(Cut(answer=2, at=CUT_AT, action="reset"))
    outcomes, seconds = await ask(c, ["b", "c"], timeout_s=TIMEOUT_S, page_size=100)
    c.relay.disarm()
    b = outcomes["b"]
    assert c.relay.faults == 1, f"no reset; B's answers: {c.relay.answer_sizes} bytes"
    assert b.status == "unavailable" and b.detail.startswith("answer cut off mid-body"), b
    # The first page (100 entries) arrived and verified; the answer did not finish, so none
    # of it counts, and the bytes of the cut page were never parsed.
    assert 100 <= b.found < full["b"].found
    assert (b.verified, b.records, b.failures) == (0, [], [])
    assert "incomplete answer" in b.detail
    assert_answered(outcomes["c"])
    record_figures("peer_reset_mid_body", {
        "peers": 2, "vanished": 1, "found": {k: o.found for k, o in outcomes.items()},
        "verified": {k: o.verified for k, o in outcomes.items()},
        "failures": sum(len(o.failures) for o in outcomes.values()), "reason": b.detail,
        "seconds": round(seconds, 2)})

    # The member survives the reset and answers in full again; the querying side is as it
    # was.
    again, _ = await ask(c, ["b"], timeout_s=TIMEOUT_S)
    assert_answered(again["b"])
    assert again["b"].found == full["b"].found
    assert_unchanged(before, await state_of(c.a))


async def test_a_connection_dropped_before_the_answer_is_asked_again_with_a_fresh_context(
        consortium: Consortium) -> None:
    """A reset before any byte of the answer could be decrypted (inside its first TLS
    record): the member may never have seen the request, so it is sent again on a new
    connection -- with a new request context, since the member accepts each ``jti`` once (a
    resent copy would be refused as a replay, http-401, and reported as a refusal)."""
    c = consortium
    c.relay.arm(Cut(answer=1, at=4 * 1024, action="reset"))
    outcomes, _ = await ask(c, ["b"], timeout_s=TIMEOUT_S)
    c.relay.disarm()
    assert c.relay.faults == 1, f"no reset; B's answers: {c.relay.answer_sizes} bytes"
    assert_answered(outcomes["b"])
    assert outcomes["b"].found > 100


async def test_members_that_accept_and_never_answer_time_out_others_answer(
        consortium: Consortium) -> None:
    c = consortium
    before = await state_of(c.a)
    outcomes, seconds = await ask(c, ["c", "d", "s"], timeout_s=HANG_TIMEOUT_S)
    # Both hung members were reached: one never finished the TLS handshake, one stalled
    # half-way through the $everything page after answering discovery.
    assert c.silent.accepted >= 1 and c.half.stalled == 1
    for member in ("d", "s"):
        o = outcomes[member]
        assert o.status == "timeout" and o.detail, o
        assert (o.found, o.verified, o.records, o.failures) == (0, 0, [], []), o
    assert_answered(outcomes["c"])
    record_figures("peer_silent", {
        "peers": 3, "vanished": 2, "found": {k: o.found for k, o in outcomes.items()},
        "verified": {k: o.verified for k, o in outcomes.items()},
        "failures": sum(len(o.failures) for o in outcomes.values()),
        "timeout_s": HANG_TIMEOUT_S, "seconds": round(seconds, 2)})
    assert_unchanged(before, await state_of(c.a))


async def test_sigkill_mid_page_reports_that_member_failed_and_the_other_verified(
        consortium: Consortium) -> None:
    # Last in the module: B stays dead.
    c = consortium
    before = await state_of(c.a)
    b_trail_before = await asyncio.to_thread(audit_trail, c.b_settings)
    c.relay.arm(Cut(answer=1, at=CUT_AT, action="kill"))
    status, report, stderr, seconds = await peer_query_cli(c, "b", "c")
    c.relay.disarm()
    assert c.relay.faults == 1, "the kill never happened"
    assert c.b.proc.returncode == -signal.SIGKILL
    assert "Traceback" not in stderr, stderr
    by_peer = {r["peer"]: r for r in report}
    b = by_peer["b"]
    assert b["status"] == "unavailable" and b["detail"] == "answer cut off mid-body", b
    assert (b["found"], b["verified"], b["failures"]) == (0, 0, []), b
    assert_answered(by_peer["c"])
    # Sysexits policy (edge/cli/peer.py): every record that came back verified; a member
    # that could not answer is in the report, and only "no member answered" is 69.
    assert status == OK, (status, stderr)
    record_figures("peer_sigkill_mid_page", {
        "peers": 2, "vanished": 1, "found": {r["peer"]: r["found"] for r in report},
        "verified": {r["peer"]: r["verified"] for r in report},
        "failures": sum(len(r["failures"]) for r in report), "exit": status,
        "reason": b["detail"], "seconds": round(seconds, 2)})

    # B is gone: asked alone, no member answers -> 69, still no traceback.
    status, report, stderr, _ = await peer_query_cli(c, "b")
    assert status == UNAVAILABLE, (status, report, stderr)
    assert "Traceback" not in stderr, stderr
    assert [(r["peer"], r["status"], r["verified"]) for r in report] == [
        ("b", "unavailable", 0)]

    # The querying side: records, audit trail and database exactly as before.
    assert_unchanged(before, await state_of(c.a))
    ready, _ = await c.a.daemon.readiness()
    assert ready
    # The vanished side: its database is sound after the kill, and its audit trail holds
    # the $everything disclosure it was answering (it audits before it answers), so the
    # kill did land mid-$everything.
    assert integrity_check(database_path(c.b_settings.storage.dir)) == ["ok"]
    b_trail = await asyncio.to_thread(audit_trail, c.b_settings)
    new = b_trail[len(b_trail_before):]
    assert any(e["event"] == "disclosure" and e["facility"] == "a" and e["released"] > 1
               for e in new), new
