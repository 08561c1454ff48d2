"""Storage failing while a peer request is answered: the request's audit commit, the audit of
a refusal, a read, a worker's daemon gone. Each answers 503 with an OperationOutcome
``transient`` (and Retry-After), releases nothing, counts once and logs one ERROR line without
a traceback or PHI: never aiohttp's 500."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from adapters.peer.tls import client_context
from edge.peer.audit_sink import AuditSink, LocalAuditSink
from edge.peer.channel import receive, send
from edge.peer.directory import cert_thumbprint
from edge.peer.service import RETRY_AFTER_S, PeerResponse, PeerService
from edge.peer.worker import RemoteAuditSink
from edge.storage.group_commit import GroupCommitter
from tests.edge.peer.listening import listening as serve_on_tls
from tests.edge.peer.support import HERE, PeerEnv, grant, make_env, observation, patient

T = TypeVar("T")

# What the test patient is known by: none of it may reach the log.
PHI = ("pat-1", "MRN1", "Quxfam", "Zorb", "1970-01-01")
EVERYTHING = "/Patient/pat-1/$everything"


class RefusingWrites:
    """The real group committer, whose operations meet a database that refuses writes
    (``PRAGMA query_only``, set and cleared inside each operation while ``refusing``): the
    failure travels the real path, SQLite error to StorageError in the group committer, as a
    full disk or an I/O error would."""

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer
        self.refusing = True

    async def run(self, op: Callable[[sqlite3.Connection], T], *,
                  background: bool = False) -> T:
        refusing = self.refusing

        def guarded(conn: sqlite3.Connection) -> T:
            if not refusing:
                return op(conn)
            conn.execute("PRAGMA query_only = ON")
            try:
                return op(conn)
            finally:
                conn.execute("PRAGMA query_only = OFF")

        return await self._committer.run(guarded, background=background)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[PeerEnv]:
    e = make_env(tmp_path)
    e.put([patient(), observation(1), observation(2)])
    await e.anchor()
    grant(e, facilities=("there",))
    yield e
    e.close()


@contextlib.contextmanager
def service_on(env: PeerEnv, audit: AuditSink, db: Path | None = None) -> Iterator[PeerService]:
    """A second service on ``env``'s keys and settings with its own audit sink (and
    database)."""
    service = PeerService(facility=HERE, settings=env.service.settings, db_path=db or env.db,
                          keys=env.store.keys, audit=audit)
    try:
        yield service
    finally:
        service.close()


def count(env: PeerEnv, sql: str) -> int:
    return int(env.one(sql))


def audit_rows(env: PeerEnv) -> int:
    return count(env, "SELECT count(*) FROM resources WHERE type = 'AuditEvent'")


def assert_transient(answer: PeerResponse) -> None:
    assert answer.status == 503
    assert answer.headers["Retry-After"] == str(RETRY_AFTER_S)
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in outcome["issue"]] == ["transient"]
    assert not any(p in answer.body.decode() for p in PHI)


def one_error_line(caplog: pytest.LogCaptureFixture, step: str) -> None:
    """Exactly one ERROR record, the service's, naming ``step``; no traceback, no PHI."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.exc_info) for r in errors] == [("edge.peer.service", None)]
    assert getattr(errors[0], "fields", {})["step"] == step
    assert "Traceback" not in caplog.text
    logged = caplog.text + repr([getattr(r, "fields", None) for r in caplog.records])
    assert not any(p in logged for p in PHI)


# -- through the real listener (TLS on loopback) ----------------------------------------------

@contextlib.asynccontextmanager
async def listening(tmp_path: Path, env: PeerEnv,
                    service: PeerService) -> AsyncIterator[tuple[str, aiohttp.ClientSession,
                                                                 bytes]]:
    """``service`` behind the real mutual-TLS listener; yields its base URL, a client session
    with a member's certificate, and that certificate (DER, for the JWT's binding)."""
    async with serve_on_tls(tmp_path, env, service) as served:
        context = client_context(cert=served.client.cert, key=served.client.key,
                                 ca=served.ca.cert)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as s:
            yield f"https://{served.bound}", s, served.client_der


async def test_failed_audit_commit_is_503_and_releases_nothing(
        tmp_path: Path, env: PeerEnv, caplog: pytest.LogCaptureFixture) -> None:
    writes = RefusingWrites(env.committer)
    with service_on(env, LocalAuditSink(writes, env.store)) as service:
        async with listening(tmp_path, env, service) as (url, session, der):
            token = env.token(cert_thumbprint=cert_thumbprint(der))
            headers = {"Authorization": f"Bearer {token}"}
            before = audit_rows(env)
            with caplog.at_level(logging.INFO):
                async with session.get(url + EVERYTHING, headers=headers) as resp:
                    status, body = resp.status, await resp.read()
                    assert resp.headers["Content-Type"] == "application/fhir+json"
                    answer = PeerResponse(status, body, resp.content_type,
                                          {"Retry-After": resp.headers.get("Retry-After", "")})
            assert_transient(answer)
            assert "entry" not in answer.json()
            one_error_line(caplog, "audit")
            assert service.counters.unavailable == 1 and service.counters.permitted == 0
            assert audit_rows(env) == before
            assert count(env, "SELECT count(*) FROM peer_jti") == 0
            # Once storage works again the same request (its JWT id never became durable)
            # is answered, with its audit record.
            writes.refusing = False
            async with session.get(url + EVERYTHING, headers=headers) as resp:
                assert resp.status == 200
                assert len((await resp.json(content_type=None))["entry"]) == 3
            assert audit_rows(env) == before + 3  # decision, access, disclosure
            assert service.counters.permitted == 1


async def test_failed_refusal_audit_is_503(env: PeerEnv,
                                           caplog: pytest.LogCaptureFixture) -> None:
    sink = LocalAuditSink(RefusingWrites(env.committer), env.store)
    with service_on(env, sink) as service, caplog.at_level(logging.INFO):
        answer = await env.get(EVERYTHING, token=env.token(audience="elsewhere"),
                               service=service)
    assert_transient(answer)
    one_error_line(caplog, "refusal audit")
    assert (service.counters.refused, service.counters.unavailable) == (0, 1)


async def test_unreadable_database_is_503(tmp_path: Path, env: PeerEnv,
                                          caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "nowhere" / "edge.db"  # read-only open of a missing file fails
    with service_on(env, LocalAuditSink(env.committer, env.store), missing) as service:
        with caplog.at_level(logging.INFO):
            answer = await env.get(EVERYTHING, service=service)
        assert_transient(answer)
        one_error_line(caplog, "read")
        caplog.clear()
        with caplog.at_level(logging.INFO):
            checkpoint = await env.get("/ledger/checkpoints/latest", service=service)
        assert_transient(checkpoint)
        one_error_line(caplog, "checkpoint read")
        assert service.counters.unavailable == 2


async def test_checkpoint_missing_table_is_404_other_errors_503(
        tmp_path: Path, env: PeerEnv, caplog: pytest.LogCaptureFixture) -> None:
    bare = tmp_path / "bare.db"
    sqlite3.connect(bare).close()
    with service_on(env, LocalAuditSink(env.committer, env.store), bare) as service:
        for which in ("7", "latest"):  # no anchorer has run: no table, no checkpoint
            assert (await env.get(f"/ledger/checkpoints/{which}", service=service)).status \
                == 404
        # A table the statement cannot read (here: without its columns) is an operational
        # error other than "no such table": the checkpoint may well exist, so not a 404.
        conn = sqlite3.connect(bare)
        conn.execute("CREATE TABLE ledger_checkpoints (tree_size INTEGER)")
        conn.commit()
        conn.close()
        for which in ("7", "latest"):
            caplog.clear()
            with caplog.at_level(logging.INFO):
                answer = await env.get(f"/ledger/checkpoints/{which}", service=service)
            assert_transient(answer)
            one_error_line(caplog, "checkpoint read")


# -- in a worker process: the daemon answers an error, or is gone ----------------------------

class Channel:
    """Both ends of a worker's channel in this process: the worker side dispatches the
    daemon's messages to its sink as :class:`edge.peer.worker._Worker` does."""

    def __init__(self, worker: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 daemon: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        (self.reader, self.writer), (self.daemon_reader, self.daemon_writer) = worker, daemon
        self.sink = RemoteAuditSink(self.writer)

    async def dispatch_one(self) -> None:
        """The worker reads the daemon's next message; the channel's end fails the waiting
        requests."""
        try:
            message = await receive(self.reader)
        except asyncio.IncompleteReadError:
            self.sink.fail_all()
            return
        assert message[0] == "answer"
        self.sink.answer(*message[1:])


@pytest.fixture
async def channel() -> AsyncIterator[Channel]:
    ours, theirs = socket.socketpair()
    worker = await asyncio.open_connection(sock=ours)
    daemon = await asyncio.open_connection(sock=theirs)
    yield Channel(worker, daemon)
    for _, writer in (worker, daemon):
        writer.close()


async def test_worker_answers_503_when_its_daemon_fails_or_is_gone(
        env: PeerEnv, channel: Channel, caplog: pytest.LogCaptureFixture) -> None:
    with service_on(env, channel.sink) as service, caplog.at_level(logging.INFO):
        # The daemon's commit failed: it answers with the StorageError's text.
        asked = asyncio.ensure_future(env.get(EVERYTHING, service=service))
        kind, number, _ = await receive(channel.daemon_reader)
        assert kind == "audit"
        send(channel.daemon_writer, "answer", number, 0,
             "commit: OperationalError: database or disk is full")
        await channel.dispatch_one()
        assert_transient(await asked)
        one_error_line(caplog, "audit")
        # The daemon goes away while a request waits for its commit.
        caplog.clear()
        asked = asyncio.ensure_future(env.get(EVERYTHING, service=service))
        assert (await receive(channel.daemon_reader))[0] == "audit"
        channel.daemon_writer.close()
        await channel.dispatch_one()
        assert_transient(await asked)
        one_error_line(caplog, "audit")
        # And once the channel is closed, a request fails at once (nothing is sent).
        caplog.clear()
        channel.writer.close()
        assert_transient(await env.get(EVERYTHING, service=service))
        one_error_line(caplog, "audit")
        assert service.counters.unavailable == 3 and service.counters.permitted == 0
