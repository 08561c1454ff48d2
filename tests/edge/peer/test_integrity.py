"""A stored row that fails verification while a peer request is answered (a flipped
ciphertext byte, bodies swapped between rows, an old version replayed over a newer one, a data
key that no longer unwraps, a forged index row): the peer gets 500 with an OperationOutcome
``exception`` and a text that says nothing of our store; nothing of the request is released,
not even the entries that verify; our log gets one ERROR line locating the row, without a
traceback or PHI; ``integrity_failures`` counts it. Never aiohttp's 500 with a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edge.crypto.keys import load_keyring
from edge.peer.audit_sink import LocalAuditSink
from edge.peer.channel import receive, send
from edge.peer.directory import cert_thumbprint
from edge.peer.service import PeerResponse, PeerService
from edge.peer.worker import RemoteAuditSink
from edge.peer.workers import commit_for_worker
from edge.store.keys import StoreKeys
from edge.store.resources import ResourceStore
from tests.edge.peer.support import (
    HERE,
    PeerEnv,
    flip_byte,
    grant,
    make_env,
    observation,
    patient,
)
from tests.edge.peer.test_unavailable import EVERYTHING, PHI, audit_rows, count, listening

Tamper = Callable[[PeerEnv], int]  # alters the database, returns the row that fails


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[PeerEnv]:
    e = make_env(tmp_path)
    e.put([patient(), observation(1), observation(2), observation(3)])
    e.put([{**observation(3), "valueQuantity": {"value": 33}}])  # obs-3 version 2
    await e.anchor()
    grant(e, facilities=("there",))
    yield e
    e.close()


def row_of(env: PeerEnv, rid: str, version: int = 1) -> int:
    return int(env.one("SELECT row FROM resources WHERE id = ? AND version = ?", rid, version))


def body_of(env: PeerEnv, row: int) -> bytes:
    return bytes(env.one("SELECT body FROM resources WHERE row = ?", row))


def swap_bodies(env: PeerEnv) -> int:
    a, b = row_of(env, "obs-1"), row_of(env, "obs-2")
    body_a, body_b = body_of(env, a), body_of(env, b)
    env.execute("UPDATE resources SET body = ? WHERE row = ?", body_b, a)
    env.execute("UPDATE resources SET body = ? WHERE row = ?", body_a, b)
    return a  # the first one opened (by id)


def replay_old_version(env: PeerEnv) -> int:
    """obs-3's version 1 (body and leaf hash) written over its version 2."""
    old, new = row_of(env, "obs-3", 1), row_of(env, "obs-3", 2)
    conn = env.connect()
    try:
        with conn:
            conn.execute("UPDATE resources SET (body, leaf_hash) = (SELECT body, leaf_hash "
                         "FROM resources WHERE row = ?) WHERE row = ?", (old, new))
    finally:
        conn.close()
    return new


def alter_key(env: PeerEnv, where: str) -> str:
    """The ``data_keys`` row ``where`` selects altered so that it no longer unwraps."""
    conn = env.connect()
    try:
        key_id, wrapped = conn.execute(
            f"SELECT key_id, wrapped FROM data_keys WHERE {where}").fetchone()
        with conn:
            conn.execute("UPDATE data_keys SET wrapped = ? WHERE key_id = ?",
                         (wrapped[:-1] + bytes([wrapped[-1] ^ 1]), key_id))
        return str(key_id)
    finally:
        conn.close()


def alter_wrapped_key(env: PeerEnv) -> int:
    """The patient's wrapped data key altered: it no longer unwraps (seen by a service that
    has not opened it yet: a restarted daemon)."""
    alter_key(env, "key_id = (SELECT key_id FROM resources WHERE id = 'pat-1')")
    return row_of(env, "pat-1")


def unopened_keys(env: PeerEnv) -> StoreKeys:
    """``env``'s keys as a process that has opened none of them yet sees them."""
    kek = env.db.parent / "kek"
    return StoreKeys(lambda: load_keyring(kek))


def fresh_service(env: PeerEnv) -> PeerService:
    """A service with keys of its own, none of them opened yet (as after a restart)."""
    keys = unopened_keys(env)
    return PeerService(facility=HERE, settings=env.service.settings, db_path=env.db,
                       keys=keys, audit=LocalAuditSink(env.committer, ResourceStore(keys)))


def key_of(env: PeerEnv, row: int) -> str:
    return str(env.one("SELECT key_id FROM resources WHERE row = ?", row))


def assert_not_served(answer: PeerResponse) -> None:
    """500, one issue ``exception``, the same generic text whatever failed, no entry."""
    assert answer.status == 500
    assert answer.content_type == "application/fhir+json"
    assert answer.json() == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "exception",
         "diagnostics": "the request could not be served; nothing was released"}]}
    assert "Retry-After" not in answer.headers  # asking again will not help


def one_error_line(caplog: pytest.LogCaptureFixture, env: PeerEnv, row: int,
                   rtype: str, version: int, step: str = "read", *,
                   keyed: bool = True) -> dict[str, Any]:
    """Exactly one ERROR record, the service's, locating the row (its key id unless
    ``keyed`` is false: an index check fails before a key is involved); no traceback, no PHI
    and no logical id (ids may be chosen by a client: the row number finds the row)."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.exc_info) for r in errors] == [("edge.peer.service", None)]
    fields: dict[str, Any] = getattr(errors[0], "fields", {})
    assert {k: fields[k] for k in ("step", "peer", "table", "row", "type", "version",
                                   "key_id")} == {
        "step": step, "peer": "there", "table": "resources", "row": row, "type": rtype,
        "version": version, "key_id": key_of(env, row) if keyed else None}
    assert fields["problem"]
    logged = caplog.text + repr([getattr(r, "fields", None) for r in caplog.records])
    assert "Traceback" not in logged
    assert not any(p in logged for p in (*PHI, "obs-", "Patient/"))
    return fields


async def test_a_tampered_entry_fails_the_whole_request_through_the_listener(
        tmp_path: Path, env: PeerEnv, caplog: pytest.LogCaptureFixture) -> None:
    row = flip_byte(env, "obs-2")  # the Patient, obs-1 and obs-3 still verify
    before = audit_rows(env)
    async with listening(tmp_path, env, env.service) as (url, session, der):
        headers = {"Authorization": f"Bearer {env.token(cert_thumbprint=cert_thumbprint(der))}"}
        with caplog.at_level(logging.INFO):
            async with session.get(url + EVERYTHING, headers=headers) as resp:
                answer = PeerResponse(resp.status, await resp.read(), resp.content_type,
                                      dict(resp.headers))
        assert_not_served(answer)
        body = answer.body.decode()
        assert not any(p in body for p in (*PHI, "obs-", "glucose", "entry"))
        one_error_line(caplog, env, row, "Observation", 1)
        counters = env.service.counters
        assert (counters.integrity_failures, counters.permitted, counters.unavailable) == \
            (1, 0, 0)
        # Not audited (nothing was disclosed) and its JWT id not kept: the same request
        # sent again meets the same row, not a replay refusal.
        assert audit_rows(env) == before
        assert count(env, "SELECT count(*) FROM peer_jti") == 0
        async with session.get(url + EVERYTHING, headers=headers) as resp:
            assert resp.status == 500
        assert counters.integrity_failures == 2 and counters.refused == 0


@pytest.mark.parametrize(("tamper", "path", "query", "failing"), [
    (swap_bodies, EVERYTHING, {}, ("Observation", 1)),
    (replay_old_version, EVERYTHING, {}, ("Observation", 2)),
    (replay_old_version, "/Observation", {"patient": "pat-1"}, ("Observation", 2)),
    (lambda env: flip_byte(env, "pat-1"), "/Patient/pat-1", {}, ("Patient", 1)),
    (lambda env: flip_byte(env, "pat-1"), "/Patient",
     {"identifier": "urn:oid:1.2.3.4|MRN1"}, ("Patient", 1)),
    (alter_wrapped_key, EVERYTHING, {}, ("Patient", 1)),
], ids=["swapped", "replayed-version", "replayed-search", "patient-read", "discovery",
        "key-does-not-unwrap"])
async def test_each_kind_of_damage_is_a_500_and_one_log_line(
        env: PeerEnv, caplog: pytest.LogCaptureFixture, tamper: Tamper, path: str,
        query: dict[str, str], failing: tuple[str, int]) -> None:
    row = tamper(env)
    service = fresh_service(env)
    try:
        with caplog.at_level(logging.INFO):
            answer = await env.get(path, query, service=service)
        assert_not_served(answer)
        assert not any(p in answer.body.decode() for p in PHI)
        one_error_line(caplog, env, row, *failing)
        assert service.counters.integrity_failures == 1
    finally:
        service.close()


async def test_a_forged_identifier_index_row_is_a_500(
        env: PeerEnv, caplog: pytest.LogCaptureFixture) -> None:
    """Discovery by an identifier whose index row was copied onto another record: that record
    is not released as the match (check 6 of edge.store.resources)."""
    env.put([patient(2)], ref=None)  # a second Patient, without the first one's identifier
    target = row_of(env, "pat-2")
    env.execute("INSERT INTO resource_identifiers (resource, value) SELECT ?, value FROM "
                "resource_identifiers WHERE resource = ?", target, row_of(env, "pat-1"))
    env.execute("DELETE FROM resource_identifiers WHERE resource = ?", row_of(env, "pat-1"))
    with caplog.at_level(logging.INFO):
        answer = await env.get("/Patient", {"identifier": "urn:oid:1.2.3.4|MRN1"})
    assert_not_served(answer)
    fields = one_error_line(caplog, env, target, "Patient", 1, keyed=False)
    assert "identifier index" in fields["problem"]


def fresh_writer(env: PeerEnv) -> PeerService:
    """A service reading with ``env``'s keys (opened already) whose audit writes go through
    a store with keys of its own, none opened yet: the writer meets the altered key."""
    return PeerService(facility=HERE, settings=env.service.settings, db_path=env.db,
                       keys=env.store.keys,
                       audit=LocalAuditSink(env.committer, ResourceStore(unopened_keys(env))))


def writer_error_line(caplog: pytest.LogCaptureFixture, step: str, key_id: str) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.exc_info) for r in errors] == [("edge.peer.service", None)]
    fields: dict[str, Any] = getattr(errors[0], "fields", {})
    assert (fields["step"], fields["key_id"]) == (step, key_id)
    logged = caplog.text + repr([getattr(r, "fields", None) for r in caplog.records])
    assert "Traceback" not in logged and not any(p in logged for p in PHI)


async def test_a_key_the_audit_writer_cannot_unwrap_is_a_500(
        env: PeerEnv, caplog: pytest.LogCaptureFixture) -> None:
    """The records verify (their key was opened before it was altered), the AuditEvents
    cannot be sealed: not durable, so nothing is released."""
    key_id = alter_key(env, "key_id = (SELECT key_id FROM resources WHERE id = 'pat-1')")
    before = audit_rows(env)
    service = fresh_writer(env)
    try:
        with caplog.at_level(logging.INFO):
            answer = await env.get(EVERYTHING, service=service)
        assert_not_served(answer)
        writer_error_line(caplog, "audit", key_id)
        assert (service.counters.integrity_failures, service.counters.permitted) == (1, 0)
    finally:
        service.close()
    assert audit_rows(env) == before


async def test_a_system_key_the_refusal_audit_cannot_unwrap_is_a_500(
        env: PeerEnv, caplog: pytest.LogCaptureFixture) -> None:
    assert (await env.get(EVERYTHING, token=env.token(audience="elsewhere"))).status == 401
    key_id = alter_key(env, "purpose = 'system'")  # made by that refusal's audit
    service = fresh_writer(env)
    try:
        with caplog.at_level(logging.INFO):
            answer = await env.get(EVERYTHING, token=env.token(audience="elsewhere"),
                                   service=service)
        assert_not_served(answer)
        writer_error_line(caplog, "refusal audit", key_id)
        assert (service.counters.integrity_failures, service.counters.refused) == (1, 0)
    finally:
        service.close()


async def test_in_a_worker_a_key_the_daemons_writer_cannot_unwrap_is_a_500(
        env: PeerEnv, caplog: pytest.LogCaptureFixture) -> None:
    """As above, with the peer API in a worker process: the daemon's writer meets the
    altered key and answers with the IntegrityError (edge.peer.workers.commit_for_worker),
    so the worker answers 500 and logs where, not a 503 inviting retries that would fail
    the same way."""
    key_id = alter_key(env, "key_id = (SELECT key_id FROM resources WHERE id = 'pat-1')")
    before = audit_rows(env)
    daemon_sink = LocalAuditSink(env.committer, ResourceStore(unopened_keys(env)))
    ours, theirs = socket.socketpair()
    worker_reader, worker_writer = await asyncio.open_connection(sock=ours)
    daemon_reader, daemon_writer = await asyncio.open_connection(sock=theirs)
    sink = RemoteAuditSink(worker_writer)
    service = PeerService(facility=HERE, settings=env.service.settings, db_path=env.db,
                          keys=env.store.keys, audit=sink)
    try:
        with caplog.at_level(logging.INFO):
            asked = asyncio.ensure_future(env.get(EVERYTHING, service=service))
            kind, number, payload = await receive(daemon_reader)
            size, error = await commit_for_worker(daemon_sink, kind, payload)
            send(daemon_writer, "answer", number, size, error)
            message = await receive(worker_reader)
            sink.answer(*message[1:])
            answer = await asked
        assert_not_served(answer)
        writer_error_line(caplog, "audit", key_id)
        assert (service.counters.integrity_failures, service.counters.unavailable) == (1, 0)
    finally:
        service.close()
        for writer in (worker_writer, daemon_writer):
            writer.close()
    assert audit_rows(env) == before
