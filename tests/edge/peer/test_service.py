"""The peer API service without sockets: discovery, paging, totals, decisions per page,
receipts, audit, replay, checkpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from edge.peer.audit import audit_trail, summarize
from edge.peer.codes import RECEIPT_EXTENSION, RECEIPT_PENDING_EXTENSION
from edge.peer.service import PeerRequest
from ledger_client.checkpoint import open_checkpoint
from ledger_client.log import MerkleLog
from ledger_client.receipt import Receipt, verify_receipt
from tests.edge.peer.support import REF, PeerEnv, grant, make_env, observation, patient, withdraw


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[PeerEnv]:
    e = make_env(tmp_path)
    e.put([patient(), *(observation(k) for k in range(7)), observation(99, "PSY")])
    await e.anchor()
    yield e
    e.close()


def trail(env: PeerEnv) -> list[dict[str, Any]]:
    conn = env.connect()
    try:
        return [summarize(e) for e in audit_trail(conn, env.store, REF)]
    finally:
        conn.close()


async def test_no_consent_is_403_and_audited(env: PeerEnv) -> None:
    answer = await env.get("/Patient/pat-1/$everything")
    assert answer.status == 403
    assert answer.json()["issue"][0]["diagnostics"] == "access denied: no-consent"
    events = trail(env)
    assert [(e["event"], e["outcome"]) for e in events] == [
        ("consent-decision", "refused"), ("operation", "refused")]
    assert events[0]["facility"] == "there" and events[0]["user"] == "there/dr-x"


async def test_pages_totals_and_receipts(env: PeerEnv) -> None:
    grant(env, facilities=("there",))
    first = (await env.get("/Patient/pat-1/$everything", {"_count": "3"})).json()
    # 1 Patient + 7 Observations; the PSY one is withheld and not counted.
    assert first["total"] == 8
    assert [e["resource"]["id"] for e in first["entry"]] == ["pat-1", "obs-0", "obs-1"]
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert nxt.startswith("https://here.test/Patient/pat-1/$everything?") and "_offset=3" in nxt
    seen = [e["resource"]["id"] for e in first["entry"]]
    offset = 3
    while True:
        page = (await env.get("/Patient/pat-1/$everything",
                              {"_count": "3", "_offset": str(offset)})).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        offset += 3
        if not any(link["relation"] == "next" for link in page["link"]):
            break
    assert seen == ["pat-1", *(f"obs-{k}" for k in range(7))]
    anchored = env.anchorer.latest_anchored()
    assert anchored is not None
    for entry in first["entry"]:
        ext = entry["extension"][0]
        assert ext["url"] == RECEIPT_EXTENSION
        receipt = Receipt.from_json(json.loads(ext["valueString"]))
        check = verify_receipt(entry["resource"], receipt, anchored.checkpoint.root_hash)
        assert check.ok, check.problems


async def test_consent_is_decided_again_for_every_page(env: PeerEnv) -> None:
    consent_id = grant(env, facilities=("there",))
    first = await env.get("/Patient/pat-1/$everything", {"_count": "2"})
    assert first.status == 200
    withdraw(env, consent_id)
    second = await env.get("/Patient/pat-1/$everything", {"_count": "2", "_offset": "2"})
    assert second.status == 403


async def test_type_limits_and_search_by_patient(env: PeerEnv) -> None:
    grant(env, facilities=("there",), classes=("Condition",))
    everything = (await env.get("/Patient/pat-1/$everything")).json()
    # Only the Patient (always, when permitted): no Observation was permitted.
    assert everything["total"] == 1
    search = (await env.get("/Observation", {"patient": "Patient/pat-1"})).json()
    assert search["total"] == 0 and search["entry"] == []
    grant(env, facilities=("there",), classes=("Observation",), labels=("PSY",))
    search = (await env.get("/Observation", {"patient": "pat-1"})).json()
    assert search["total"] == 8  # with the PSY one now


async def test_discovery_needs_one_certain_match(env: PeerEnv) -> None:
    env.put([patient(2, name=[{"family": "Quxfam", "given": ["Zorb"]}], birthDate="1970-01-01")],
            ref=REF.__class__(REF.system, "MRN2"))
    grant(env, facilities=("there",))
    by_id = (await env.get("/Patient", {"identifier": "urn:oid:1.2.3.4|MRN1"})).json()
    assert by_id["total"] == 1 and by_id["entry"][0]["resource"]["id"] == "pat-1"
    # pat-1 and pat-2 share these demographics: not one certain match, nothing released.
    twins = {"family": "quxfam", "given": "ZORB", "birthdate": "1970-01-01",
             "gender": "female"}
    answer = (await env.get("/Patient", twins)).json()
    assert answer["total"] == 0 and answer["entry"] == []
    partial = await env.get("/Patient", {"family": "Quxfam"})
    assert partial.status == 400
    unknown = (await env.get("/Patient", {"identifier": "urn:oid:1.2.3.4|NOPE"})).json()
    assert unknown["total"] == 0


DISCOVER_ALL = {"identifier": "urn:oid:1.2.3.4|MRN1", "_revinclude": "*"}


async def test_discovery_with_revinclude_pages_the_match_and_its_records(env: PeerEnv) -> None:
    grant(env, facilities=("there",))
    first = (await env.get("/Patient", {**DISCOVER_ALL, "_count": "3"})).json()
    # total counts the match only (FHIR R4 search 3.1.1.5.4); _count counts every entry.
    assert first["total"] == 1
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in first["entry"]] == [
        ("pat-1", "match"), ("obs-0", "include"), ("obs-1", "include")]
    entries = list(first["entry"])
    page = first
    while nxt := next((x["url"] for x in page["link"] if x["relation"] == "next"), None):
        assert nxt.startswith("https://here.test/Patient?") and "_revinclude=%2A" in nxt
        query = dict(parse_qsl(urlsplit(nxt).query))
        page = (await env.get("/Patient", query)).json()
        assert page["total"] == 1
        entries += page["entry"]
    # What $everything releases (the PSY Observation withheld), each with its receipt.
    everything = (await env.get("/Patient/pat-1/$everything")).json()
    assert [e["resource"] for e in entries] == [e["resource"] for e in everything["entry"]]
    assert [e["search"]["mode"] for e in entries] == ["match"] + ["include"] * 7
    assert [e["extension"] for e in entries] == [e["extension"] for e in everything["entry"]]
    # Each request's audit: the decision, the query, the disclosure of the entries it sent.
    accesses = ("patient-query", "operation", "disclosure")
    assert [(e["event"], e["released"]) for e in trail(env) if e["event"] in accesses] == [
        (event, n) for n in (3, 3, 2) for event in ("patient-query", "disclosure")] + [
        ("operation", 8), ("disclosure", 8)]


async def test_discovery_with_revinclude_releases_nothing_without_the_patient(
        env: PeerEnv) -> None:
    # The Patient is very restricted (V) and the permit does not cover that label: its
    # Observations, which it does cover, are not released without it.
    env.put([patient(meta={"security": [{"code": "V"}]})])
    grant(env, facilities=("there",))
    assert (await env.get("/Patient/pat-1/$everything")).json()["total"] == 7
    answer = (await env.get("/Patient", DISCOVER_ALL)).json()
    assert answer["total"] == 0 and answer["entry"] == []
    assert [e["event"] for e in trail(env)][-2:] == ["consent-decision", "patient-query"]
    refused = await env.get("/Patient", {**DISCOVER_ALL, "_revinclude": "Observation:patient"})
    assert refused.status == 400
    assert refused.json()["issue"][0]["code"] == "not-supported"
    assert (await env.get("/metadata")).json()["rest"][0]["resource"][0] == {
        "type": "Patient", "interaction": [{"code": "search-type"}, {"code": "read"}],
        "searchRevInclude": ["*"]}


async def test_default_permit_treatment_and_purposes(tmp_path: Path) -> None:
    e = make_env(tmp_path, default_consent="permit-treatment")
    try:
        e.put([patient(), observation(1), observation(2, "R")])
        answer = (await e.get("/Patient/pat-1/$everything")).json()
        assert answer["total"] == 2  # the R-labelled one needs an explicit permit
        # Not anchored yet: served, marked pending.
        assert all(x["extension"][0]["url"] == RECEIPT_PENDING_EXTENSION
                   for x in answer["entry"])
        assert (await e.get("/Patient/pat-1/$everything", purpose="HPAYMT")).status == 403
    finally:
        e.close()


async def test_break_glass_needs_role_and_reason(env: PeerEnv) -> None:
    assert (await env.get("/Patient/pat-1/$everything", purpose="BTG", role="er")).status == 403
    assert (await env.get("/Patient/pat-1/$everything", purpose="BTG", role="clerk",
                          reason="unconscious")).status == 403
    answer = await env.get("/Patient/pat-1/$everything", purpose="ETREAT", role="er",
                           reason="unconscious")
    assert answer.status == 200 and answer.json()["total"] == 8  # PSY still withheld
    flagged = [e for e in trail(env) if e["break_glass"]]
    assert {e["event"] for e in flagged} == {"consent-decision", "operation", "disclosure"}


async def test_context_failures_are_401_and_audited(env: PeerEnv) -> None:
    grant(env, facilities=("there",))
    token = env.token()
    assert (await env.get("/Patient/pat-1", token=token)).status == 200
    assert (await env.get("/Patient/pat-1", token=token)).status == 401  # replay
    assert (await env.get("/Patient/pat-1", token=env.token(audience="elsewhere"))).status \
        == 401
    assert (await env.get("/Patient/pat-1",
                          token=env.token(cert_thumbprint="A" * 43))).status == 401
    conn = env.connect()
    try:
        (refused,) = conn.execute("SELECT count(*) FROM resources WHERE type = 'AuditEvent' "
                                  "AND patient IS NULL").fetchone()
    finally:
        conn.close()
    assert refused == 3  # sealed under the SYSTEM key: no patient was looked at
    assert env.service.counters.refused == 3


async def test_audit_events_are_ledgered(env: PeerEnv) -> None:
    conn = env.connect()
    try:
        before = MerkleLog(conn).size
    finally:
        conn.close()
    await env.get("/Patient/pat-1/$everything")
    conn = env.connect()
    try:
        rows = conn.execute("SELECT leaf_hash, ledger_index FROM resources "
                            "WHERE type = 'AuditEvent' ORDER BY row").fetchall()
        log = MerkleLog(conn)
        assert log.size == before + len(rows) == before + 2
        assert all(log.leaf(index) == bytes(leaf) for leaf, index in rows)
    finally:
        conn.close()


async def test_checkpoint_endpoint_serves_signed_notes(env: PeerEnv) -> None:
    anchored = env.anchorer.latest_anchored()
    assert anchored is not None
    size = anchored.checkpoint.tree_size
    for which in (str(size), "latest"):
        answer = await env.service.handle(_plain(env, f"/ledger/checkpoints/{which}"))
        assert answer.status == 200
        cp = open_checkpoint(answer.body.decode(), env.anchorer._signer.verifier)
        assert (cp.tree_size, cp.root_hash) == (size, anchored.checkpoint.root_hash)
    assert (await env.service.handle(_plain(env, "/ledger/checkpoints/999"))).status == 404
    assert (await env.service.handle(_plain(env, "/metadata"))).status == 200
    assert (await env.service.handle(_plain(env, "/Nothing"))).status == 404


def _plain(env: PeerEnv, path: str) -> PeerRequest:
    return PeerRequest(peer=env.peer, cert_der=env.cert, method="GET", path=path, query={})


async def test_a_patient_whose_mr_identifier_has_no_system_is_found_under_its_stored_key(
        tmp_path: Path) -> None:
    # The FHIR API stores a Patient under its first identifier with a system (an MR typed one
    # first): here the second, since the MR one has none. The peer must read the same key.
    e = make_env(tmp_path)
    try:
        mr_without_system = {"value": "LOCAL7", "type": {"coding": [{"code": "MR"}]}}
        e.put([patient(identifier=[mr_without_system, {"system": REF.system,
                                                         "value": REF.value}]),
               observation(1)])
        grant(e, facilities=("there",))
        answer = await e.get("/Patient/pat-1/$everything")
        assert answer.status == 200
        assert sorted(x["resource"]["id"] for x in answer.json()["entry"]) == ["obs-1", "pat-1"]
        assert [ev["outcome"] for ev in trail(e)][-3:] == ["success"] * 3  # under REF's key
    finally:
        e.close()
