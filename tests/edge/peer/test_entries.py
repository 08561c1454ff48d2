"""Served entries are reused only while what they were made from is unchanged: a new
version, a tampered row, a row moved between patients, an erased key or a changed consent
all count from the next request. A new checkpoint moves a page to it only once one of the
page's records needs it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.peer import entries as entries_module
from edge.peer.codes import RECEIPT_EXTENSION, RECEIPT_PENDING_EXTENSION
from edge.peer.consent import provisions_of
from edge.peer.decision import Provision
from edge.peer.entries import (
    ConsentRules,
    EntryCache,
    Record,
    RecordCache,
    bundle_json,
    open_entry,
)
from edge.store.erasure import erase_patient
from edge.store.keys import PatientRef
from edge.store.resources import ResourceVersion
from ledger_client.anchorer import anchored_at
from ledger_client.receipt import Receipt, verify_receipt
from tests.edge.peer.support import (
    HERE,
    REF,
    SYSTEM,
    PeerEnv,
    flip_byte,
    grant,
    make_env,
    observation,
    patient,
    withdraw,
)

REF2 = PatientRef(SYSTEM, "MRN2")
EVERYTHING = "/Patient/pat-1/$everything"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[PeerEnv]:
    e = make_env(tmp_path)
    e.put([patient(), *(observation(k) for k in range(5)), observation(99, "PSY")])
    e.put([patient(2), {**observation(50), "subject": {"reference": "Patient/pat-2"}}], REF2)
    await e.anchor()
    grant(e, "pat-1", REF, facilities=("there",))
    grant(e, "pat-2", REF2, facilities=("there",))
    yield e
    e.close()


async def everything(env: PeerEnv, path: str = EVERYTHING) -> dict[str, Any]:
    answer = await env.get(path, {"_count": "100"})
    assert answer.status == 200, answer.body
    return dict(answer.json())


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"]]


async def not_served(env: PeerEnv, caplog: pytest.LogCaptureFixture,
                     path: str = EVERYTHING) -> str:
    """Ask for ``path``, which meets a row that fails verification: 500 and nothing
    released (tests/edge/peer/test_integrity.py); returns the check that failed."""
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        answer = await env.get(path, {"_count": "100"})
    assert answer.status == 500 and "entry" not in answer.json()
    (record,) = caplog.records
    return str(record.fields["problem"])  # type: ignore[attr-defined]


def records(env: PeerEnv) -> RecordCache:
    cache = env.service._records
    assert isinstance(cache, RecordCache)
    return cache


async def test_a_second_request_is_served_from_the_caches_unchanged(env: PeerEnv) -> None:
    first = await everything(env)
    misses = records(env).misses
    second = await everything(env)
    reused = records(env).listings_reused
    assert records(env).misses == misses and reused >= 1
    assert second["entry"] == first["entry"] and second["total"] == first["total"] == 6
    # What is served is what the store reads, receipts included.
    conn = env.connect()
    try:
        stored = {v.id: v for v in env.store.search(conn, patient=REF)}
    finally:
        conn.close()
    anchored = env.anchorer.latest_anchored()
    assert anchored is not None
    for entry in second["entry"]:
        version = stored[entry["resource"]["id"]]
        assert entry["resource"] == version.resource
        receipt = Receipt.from_json(json.loads(entry["extension"][0]["valueString"]))
        assert receipt.salt == version.salt
        assert verify_receipt(entry["resource"], receipt, anchored.checkpoint.root_hash).ok


async def test_a_new_version_replaces_the_cached_one(env: PeerEnv) -> None:
    await everything(env)
    env.put([{**observation(2), "status": "amended"}])
    bundle = await everything(env)
    entry = next(e for e in bundle["entry"] if e["resource"]["id"] == "obs-2")
    assert entry["resource"]["status"] == "amended"
    assert entry["resource"]["meta"]["versionId"] == "2"
    # Newer than the anchored checkpoint: no receipt yet, until the next checkpoint.
    assert entry["extension"][0]["url"] == RECEIPT_PENDING_EXTENSION
    await env.anchor()
    entry = next(e for e in (await everything(env))["entry"] if e["resource"]["id"] == "obs-2")
    assert entry["extension"][0]["url"] == RECEIPT_EXTENSION


def receipt_sizes(bundle: dict[str, Any]) -> set[int]:
    return {json.loads(e["extension"][0]["valueString"])["tree_size"] for e in bundle["entry"]
            if e["extension"][0]["url"] == RECEIPT_EXTENSION}


async def test_a_page_stays_on_its_checkpoint_until_a_record_needs_a_newer_one(
        env: PeerEnv) -> None:
    first = await everything(env)
    (pinned,) = receipt_sizes(first)
    # Other patients' records and newer checkpoints: this page's receipts still prove
    # against the checkpoint they were made for, and are not made again.
    env.put([{**observation(60), "subject": {"reference": "Patient/pat-2"}}], REF2)
    await env.anchor()
    latest = env.anchorer.latest_anchored()
    assert latest is not None and latest.checkpoint.tree_size > pinned
    again = await everything(env)
    assert again["entry"] == first["entry"]
    conn = env.connect()
    try:
        checkpoint = anchored_at(conn, HERE, pinned)
    finally:
        conn.close()
    assert checkpoint is not None
    for entry in again["entry"]:
        receipt = Receipt.from_json(json.loads(entry["extension"][0]["valueString"]))
        assert verify_receipt(entry["resource"], receipt, checkpoint.checkpoint.root_hash).ok
    # A record of this page's patient covered only by the newest checkpoint: the whole
    # page moves to it, so one answer's receipts share one checkpoint.
    env.put([observation(7)])
    await env.anchor()
    moved = await everything(env)
    newest = env.anchorer.latest_anchored()
    assert newest is not None
    assert receipt_sizes(moved) == {newest.checkpoint.tree_size}
    assert len(moved["entry"]) == len(first["entry"]) + 1


async def test_a_resource_moved_by_a_new_version_leaves_the_first_patients_listing(
        env: PeerEnv) -> None:
    """No row of pat-1 changes when obs-2's next version is written under pat-2: only the
    store's change epoch tells pat-1's cached listing that obs-2 is no longer theirs."""
    assert "obs-2" in ids(await everything(env))
    await everything(env)
    reused = records(env).listings_reused
    env.put([{**observation(2), "subject": {"reference": "Patient/pat-2"}}], REF2)
    assert "obs-2" not in ids(await everything(env))
    assert records(env).listings_reused == reused
    assert "obs-2" in ids(await everything(env, "/Patient/pat-2/$everything"))


async def test_a_tampered_row_is_not_served_from_the_cache(env: PeerEnv,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    await everything(env)
    flip_byte(env, "obs-3")
    assert "failed authentication" in await not_served(env, caplog)


async def test_a_row_moved_to_another_patient_is_refused(env: PeerEnv,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    await everything(env)
    await everything(env, "/Patient/pat-2/$everything")  # pat-2's row is cached too
    env.execute("UPDATE resources SET patient = (SELECT patient FROM resources "
                "WHERE type = 'Patient' AND id = 'pat-1') WHERE type = 'Observation' "
                "AND id = 'obs-50'")
    assert "another owner" in await not_served(env, caplog)


async def test_a_row_whose_key_is_gone_is_refused(env: PeerEnv,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    await everything(env, "/Patient/pat-2/$everything")
    conn = env.connect()
    try:
        with conn:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("DELETE FROM data_keys WHERE key_id = (SELECT key_id FROM resources "
                         "WHERE id = 'obs-50')")
    finally:
        conn.close()
    # The process still holds the key's material; the database says it is gone.
    assert "does not exist" in await not_served(env, caplog, "/Patient/pat-2/$everything")


async def test_an_erased_patients_records_leave_the_caches_at_the_next_request(
        env: PeerEnv) -> None:
    await everything(env)
    await everything(env, "/Patient/pat-2/$everything")
    assert len(env.service._rules) == 2

    def held() -> set[str]:
        return {record.id for (_, record), _cost in records(env)._items.values()}

    assert {"obs-50", "obs-2"} <= held()
    conn = env.connect()
    try:
        # As ``hie-edge erase`` does it, from another connection (another process).
        assert erase_patient(conn, env.store.keys, REF2.system, REF2.value).found
    finally:
        conn.close()
    await everything(env)  # any request: pat-1's
    assert "obs-50" not in held() and "obs-2" in held()
    entries = env.service._entries
    assert isinstance(entries, EntryCache)
    left = [json.loads(entry + b"}")["resource"]["id"] for entry, _ in entries._items.values()]
    assert "obs-50" not in left and "obs-2" in left
    rules = env.service._rules
    assert isinstance(rules, ConsentRules)
    assert len(rules) == 1  # pat-1's consent; pat-2's went with its records


async def test_consent_changes_count_from_the_next_request(env: PeerEnv) -> None:
    assert "obs-99" not in ids(await everything(env))  # PSY: no explicit permit
    label = grant(env, "pat-1", REF, facilities=("there",), labels=("PSY",))
    assert "obs-99" in ids(await everything(env))
    withdraw(env, label)
    assert "obs-99" not in ids(await everything(env))


async def test_a_consent_version_is_parsed_once_and_decided_on_every_request(
        env: PeerEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def counting(consent: dict[str, Any]) -> list[Provision]:
        parsed.append(f"{consent['id']}/{consent['status']}")
        return provisions_of(consent)

    monkeypatch.setattr(entries_module, "provisions_of", counting)
    await everything(env)
    reused = records(env).listings_reused
    assert "obs-99" not in ids(await everything(env))
    assert records(env).listings_reused == reused + 1 and len(parsed) == 1
    label = grant(env, "pat-1", REF, facilities=("there",), labels=("PSY",))
    assert "obs-99" in ids(await everything(env))
    assert "obs-99" in ids(await everything(env))
    assert parsed[1:] == [f"{label}/active"]  # only the new version, once
    withdraw(env, label)
    assert "obs-99" not in ids(await everything(env))
    assert parsed[2:] == [f"{label}/inactive"]


def version(n: int, body: dict[str, Any]) -> ResourceVersion:
    resource = {"resourceType": "Observation", "id": f"o{n}", **body}
    return ResourceVersion("Observation", f"o{n}", 1, "2024-01-01T00:00:00.000Z", resource,
                           bytes(32), bytes([n]) * 32, n, n)


def test_an_open_entry_is_closed_as_a_match_or_an_include() -> None:
    record = Record.of(version(1, {"category": [{"coding": [{"code": "laboratory"}]}],
                                   "meta": {"security": [{"code": "HIV"}]}, "note": "é\""}))
    assert record.categories == frozenset({"laboratory"}) and record.labels == {"HIV"}
    pending = [{"url": RECEIPT_PENDING_EXTENSION, "valueCode": "not-anchored-yet"}]
    entries = [open_entry(record.json, pending="not-anchored-yet"),
               *(open_entry(b'{"id":"%d"}' % n, pending="x") for n in range(3))]
    head = {"resourceType": "Bundle", "type": "searchset", "total": 1, "link": []}
    for matches, modes in ((None, ["match"] * 4), (1, ["match"] + ["include"] * 3),
                           (0, ["include"] * 4), (4, ["match"] * 4)):
        bundle = json.loads(bundle_json(head, entries, matches=matches))
        assert list(bundle) == ["resourceType", "type", "total", "link", "entry"]
        assert [e["search"]["mode"] for e in bundle["entry"]] == modes
        assert bundle["entry"][0] == {
            "resource": version(1, {"category": [{"coding": [{"code": "laboratory"}]}],
                                    "meta": {"security": [{"code": "HIV"}]},
                                    "note": "é\""}).resource,
            "extension": pending, "search": {"mode": modes[0]}}
        assert [e["resource"] for e in bundle["entry"][1:]] == [{"id": str(n)} for n in
                                                                range(3)]
    for matches in (None, 0):
        assert json.loads(bundle_json(head, [], matches=matches))["entry"] == []


def test_caches_stay_within_their_budget() -> None:
    entries = EntryCache(budget=4000)
    for n in range(50):
        entries.put((n, 10, bytes(32)), b"x" * 500)
    assert 0 < len(entries) <= 4000 // 500
    assert entries.get((49, 10, bytes(32))) == b"x" * 500  # the newest stay
    assert entries.get((0, 10, bytes(32))) is None
    cache = RecordCache(budget=3000)
    for n in range(50):
        record = Record.of(version(n, {"valueString": "y" * 200}))
        cache.put(("Observation", f"o{n}", 1, None, "k", b"b" * 100, bytes(32)), record)
    assert 0 < len(cache) < 50
