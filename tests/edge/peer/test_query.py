"""``hie-edge peer query`` (edge.peer.query) against a member whose peer API answers 503
``transient`` (its storage failed): the member is reported ``unavailable`` (ask again later),
not ``error``; a 500 (a stored row failed verification there) stays an ``error``. The member
is a real PeerService behind the real mutual-TLS listener, asked by the real PeerClient."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from adapters.peer.client import PeerClient
from adapters.peer.tls import client_context
from edge.peer.audit_sink import LocalAuditSink
from edge.peer.directory import Peer, cert_thumbprint
from edge.peer.query import CheckpointRoots, Credentials, QuerySpec, query_peer
from edge.peer.service import PeerRequest, PeerResponse, PeerService
from tests.edge.peer.listening import listening
from tests.edge.peer.support import (
    HERE,
    SYSTEM,
    PeerEnv,
    flip_byte,
    grant,
    make_env,
    observation,
    patient,
)
from tests.edge.peer.test_unavailable import RefusingWrites


@dataclass
class Member:
    """The member as the asker's directory has it, and what the asker needs to ask it."""

    peer: Peer
    client: PeerClient
    creds: Credentials


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[PeerEnv]:
    e = make_env(tmp_path)
    e.put([patient()])
    await e.anchor()
    grant(e, facilities=("there",))
    yield e
    e.close()


@contextlib.asynccontextmanager
async def member(tmp_path: Path, env: PeerEnv, service: PeerService) -> AsyncIterator[Member]:
    """``service`` (facility ``here``) behind the real listener, and a PeerClient of the
    asker (``there``, whose request-context key ``env`` trusts)."""
    async with listening(tmp_path, env, service) as served:
        server_cert = x509.load_pem_x509_certificate(served.server.cert.read_bytes())
        here = Peer(HERE, f"https://{served.bound}", env.checkpoints, None,
                    server_cert.subject.rfc4514_string())
        creds = Credentials(env.peer.id, env.peer_key, cert_thumbprint(served.client_der))
        async with PeerClient(client_context(cert=served.client.cert, key=served.client.key,
                                             ca=served.ca.cert), timeout_s=10) as peer_client:
            yield Member(here, peer_client, creds)


SPEC = QuerySpec(f"{SYSTEM}|MRN1", "TREAT", "dr-x", "physician")


async def test_a_member_answering_503_is_unavailable(tmp_path: Path, env: PeerEnv) -> None:
    service = PeerService(facility=HERE, settings=env.service.settings, db_path=env.db,
                          keys=env.store.keys,
                          audit=LocalAuditSink(RefusingWrites(env.committer), env.store))
    try:
        async with member(tmp_path, env, service) as m:
            outcome = await query_peer(m.peer, SPEC, client=m.client, creds=m.creds,
                                       roots=CheckpointRoots())
    finally:
        service.close()
    assert service.counters.unavailable == 1  # it did answer 503 transient
    assert (outcome.status, outcome.detail) == ("unavailable", "http-503: try again later")
    assert (outcome.found, outcome.verified, outcome.records) == (0, 0, [])


async def test_a_member_answering_500_is_an_error(tmp_path: Path, env: PeerEnv) -> None:
    flip_byte(env, "pat-1")
    async with member(tmp_path, env, env.service) as m:
        outcome = await query_peer(m.peer, SPEC, client=m.client, creds=m.creds,
                                   roots=CheckpointRoots())
    assert env.service.counters.integrity_failures == 1
    assert (outcome.status, outcome.detail) == ("error", "http-500")


class BeforeRevinclude(PeerService):
    """A member of a release before ``_revinclude``: it ignores the parameter, as FHIR lets a
    server do with one it does not support, and answers discovery with the match alone."""

    async def handle(self, request: PeerRequest) -> PeerResponse:
        query = {k: v for k, v in request.query.items() if k != "_revinclude"}
        return await super().handle(dataclasses.replace(request, query=query))


@pytest.mark.parametrize("revinclude", [True, False], ids=["this-release", "before"])
async def test_every_record_arrives_verified_from_members_of_either_release(
        tmp_path: Path, env: PeerEnv, revinclude: bool) -> None:
    env.put([observation(k) for k in range(5)])
    await env.anchor()
    kind = PeerService if revinclude else BeforeRevinclude
    service = kind(facility=HERE, settings=env.service.settings, db_path=env.db,
                   keys=env.store.keys, audit=LocalAuditSink(env.committer, env.store))
    try:
        async with member(tmp_path, env, service) as m:
            paged = dataclasses.replace(SPEC, page_size=4)
            outcome = await query_peer(m.peer, paged, client=m.client, creds=m.creds,
                                       roots=CheckpointRoots())
    finally:
        service.close()
    assert (outcome.status, outcome.found, outcome.verified) == ("ok", 6, 6)
    assert sorted(r["id"] for r in outcome.records) == sorted(
        ["pat-1", *(f"obs-{k}" for k in range(5))])
    # Data requests answered: this release, the match and its records in pages of 4 (2);
    # before it, the match alone, then $everything (1 + 2).
    assert service.counters.permitted == (2 if revinclude else 3)


async def test_a_patient_with_no_record_released_is_found_alone(tmp_path: Path,
                                                                env: PeerEnv) -> None:
    async with member(tmp_path, env, env.service) as m:
        outcome = await query_peer(m.peer, SPEC, client=m.client, creds=m.creds,
                                   roots=CheckpointRoots())
    assert (outcome.status, outcome.found, outcome.verified) == ("ok", 1, 1)
    assert [r["id"] for r in outcome.records] == ["pat-1"]
