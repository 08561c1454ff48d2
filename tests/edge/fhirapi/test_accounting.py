"""``GET /AuditEvent?patient=`` on the local FHIR API: the patient's accounting of disclosures
(issue 8). Driven through the real aiohttp server on loopback, on a real database file whose
AuditEvents the peer service wrote by answering real requests; the API's own audit record
goes through the same group committer as the peer's."""

from __future__ import annotations

import argparse
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from adapters.fhir.server import FHIRServer
from edge.cli.audit import run_audit
from edge.config.model import FacilitySettings, FHIRSettings, KeySettings, Settings, StorageSettings
from edge.fhirapi.accounting import AccountingAudit
from edge.fhirapi.auth import hash_token
from edge.fhirapi.service import FHIRService
from edge.inbox.store import InboxStore
from edge.peer.audit import FLAG_SYSTEM, audit_trail, summarize
from edge.processing.processor import Processor
from edge.store.keys import PatientRef
from ledger_client.log import MerkleLog
from tests.edge.fhirapi.support import NoWrites
from tests.edge.peer.support import HERE, REF, SYSTEM, PeerEnv, grant, make_env, observation
from tests.edge.peer.support import patient as patient_resource

TOKEN = "portal-token-0123456789abcdef0123456789abcdef"
REF2 = PatientRef(SYSTEM, "MRN2")


@dataclass
class Api:
    url: str
    http: aiohttp.ClientSession
    env: PeerEnv
    service: FHIRService
    accounting: AccountingAudit
    appended: list[int] = field(default_factory=list)

    async def get(self, path: str, *, token: str | None = TOKEN,
                  ) -> tuple[int, dict[str, str], dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(path if path.startswith("http") else self.url + path,
                                 headers=headers) as resp:
            return resp.status, dict(resp.headers), json.loads(await resp.text())

    def trail(self, ref: PatientRef = REF) -> list[dict[str, Any]]:
        """What ``audit_trail`` holds now (the CLI's listing, without auditing it)."""
        conn = self.env.connect()
        try:
            return audit_trail(conn, self.env.store, ref)
        finally:
            conn.close()

    def log_size(self) -> int:
        conn = self.env.connect()
        try:
            return MerkleLog(conn).size
        finally:
            conn.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    env = make_env(tmp_path)
    other = {**patient_resource(2), "identifier": [{"system": SYSTEM, "value": "MRN2"}]}
    env.put([patient_resource(1), observation(1), observation(2)])
    env.put([other], REF2)
    # Real events: pat-1 consents to "there"; its discovery and $everything are disclosed.
    # pat-2 has no consent: refused, and audited under its own key.
    grant(env, facilities=("there",))
    identifier = {"identifier": f"{SYSTEM}|MRN1"}
    assert (await env.get("/Patient", identifier)).status == 200
    assert (await env.get("/Patient/pat-1/$everything")).status == 200
    assert (await env.get("/Patient/pat-2/$everything")).status == 403
    tokens = tmp_path / "fhir-tokens"
    tokens.write_text(f"portal {hash_token(TOKEN)}\n")
    settings = FHIRSettings.model_validate({"bind": "127.0.0.1:0", "tokens_file": str(tokens),
                                            "default_count": 50})
    appended: list[int] = []
    accounting = AccountingAudit(env.committer, env.store, facility=HERE,
                                 on_appended=appended.append)
    service = FHIRService(settings, db_path=env.db, inbox=cast(InboxStore, NoWrites()),
                          processor=cast(Processor, NoWrites()), store=env.store,
                          accounting=accounting)
    server = FHIRServer(settings, service.handle)
    (bound,) = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(f"http://{bound}", http, env, service, accounting, appended)
    finally:
        await server.aclose(5)
        service.close()
        env.close()


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def pattern(event: dict[str, Any]) -> str:
    return str(summarize(event)["event"])


def next_link(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


async def test_lists_exactly_the_patients_events_in_trail_order(api: Api) -> None:
    expected = api.trail()
    assert {pattern(e) for e in expected} >= {"consent-change", "consent-decision",
                                              "patient-query", "operation", "disclosure"}
    others = {e["id"] for e in api.trail(REF2)}
    assert others  # pat-2's refusal is audited too, and must not show here

    status, headers, bundle = await api.get("/AuditEvent?patient=Patient/pat-1")
    assert status == 200 and headers["Content-Type"].startswith("application/fhir+json")
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == (
        "Bundle", "searchset", len(expected))
    assert ids(bundle) == [e["id"] for e in expected]
    got = [e["resource"] for e in bundle["entry"]]
    assert [(e["type"], e.get("subtype"), e["action"], e["outcome"]) for e in got] == [
        (e["type"], e.get("subtype"), e["action"], e["outcome"]) for e in expected]
    assert not others & set(ids(bundle))
    assert all(e["fullUrl"] == f"{api.url}/AuditEvent/{e['resource']['id']}"
               and e["search"] == {"mode": "match"} for e in bundle["entry"])
    assert next_link(bundle) is None
    assert bundle["link"][0]["url"] == f"{api.url}/AuditEvent?patient=Patient%2Fpat-1"


async def test_the_read_is_audited_after_the_listing_like_the_cli(
        api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    before = api.trail()
    size = api.log_size()
    _, _, first = await api.get("/AuditEvent?patient=Patient/pat-1")
    # The bare id is the same patient; the first read's own audit event now ends the list.
    _, _, second = await api.get("/AuditEvent?patient=pat-1")
    assert ids(first) == [e["id"] for e in before]
    assert ids(second)[:-1] == ids(first) and second["total"] == first["total"] + 1
    admin = second["entry"][-1]["resource"]
    assert pattern(admin) == "admin-read" and admin["outcome"] == "0"
    assert {"system": FLAG_SYSTEM, "code": "admin-read"} in admin["meta"]["tag"]
    assert admin["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"]
    summary = summarize(admin)
    assert (summary["user"], summary["role"], summary["released"], summary["data_classes"]) \
        == ("fhir/portal", "api-client", len(before), ["AuditEvent"])
    assert {"reference": "Patient/pat-1"} in [e.get("what") for e in admin["entity"]]
    queries = [base64.b64decode(e["query"]).decode() for e in admin["entity"] if "query" in e]
    assert queries == ["AuditEvent?patient=Patient%2Fpat-1"]
    # Sealed under pat-1's key (the CLI sees it), ledgered, and the anchorer was told.
    assert api.log_size() == size + 2 and api.appended == [size + 1, size + 2]
    assert api.accounting.events == 2
    conn = api.env.connect()
    try:
        stored = conn.execute("SELECT ledger_index FROM resources WHERE type = 'AuditEvent' "
                              "AND id = ?", (admin["id"],)).fetchone()
    finally:
        conn.close()
    assert stored is not None and stored[0] == size
    settings = Settings(facility=FacilitySettings(id=HERE),
                        storage=StorageSettings(dir=api.env.db.parent),
                        keys=KeySettings(kek_file=api.env.db.parent / "kek"))
    args = argparse.Namespace(patient=f"{SYSTEM}|MRN1", json=True, full=False)
    assert run_audit(args, settings) == 0
    listed = [e["id"] for e in json.loads(capsys.readouterr().out)]
    now = api.trail()  # the CLI listed, then audited its own read (after the listing)
    assert listed == [e["id"] for e in now[:-1]] == [*ids(second), now[-2]["id"]]
    assert [summarize(e)["user"] for e in now[-3:-1]] == ["fhir/portal", "fhir/portal"]
    assert str(summarize(now[-1])["user"]).startswith("local/")  # the CLI's operator


async def test_pages_follow_the_trail_order_by_cursor(api: Api) -> None:
    expected = [e["id"] for e in api.trail()]
    assert len(expected) > 4
    url: str | None = "/AuditEvent?patient=Patient/pat-1&_count=2"
    pages: list[dict[str, Any]] = []
    while url is not None:
        status, _, bundle = await api.get(url)
        assert status == 200
        pages.append(bundle)
        url = next_link(bundle)
        assert url is None or ("_cursor=" in url and "_count=2" in url)
        assert len(pages) < 20
    seen = [i for page in pages for i in ids(page)]
    assert all(len(ids(page)) == 2 for page in pages[:-1])
    # Each page read is audited; its event comes after every event listed so far (it is
    # written later), so the pages end with the reads of the pages before the last.
    assert seen[:len(expected)] == expected and len(seen) == len(set(seen))
    extra = [e for e in api.trail() if e["id"] in seen[len(expected):]]
    assert [pattern(e) for e in extra] == ["admin-read"] * (len(pages) - 1)
    assert [page["total"] for page in pages] == [len(expected) + n for n in range(len(pages))]
    released = [summarize(e)["released"] for e in api.trail() if pattern(e) == "admin-read"]
    assert released == [len(ids(page)) for page in pages]


async def test_post_search_is_the_same_search(api: Api) -> None:
    expected = [e["id"] for e in api.trail()]
    async with api.http.post(api.url + "/AuditEvent/_search", data="patient=pat-1",
                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Type":
                                      "application/x-www-form-urlencoded"}) as resp:
        assert resp.status == 200
        assert ids(json.loads(await resp.text())) == expected


async def test_an_unknown_patient_is_an_empty_searchset_and_not_audited(api: Api) -> None:
    size = api.log_size()
    status, _, bundle = await api.get("/AuditEvent?patient=Patient/nobody")
    assert status == 200
    assert (bundle["type"], bundle["total"], "entry" in bundle) == ("searchset", 0, False)
    # the same as another type's search for that patient
    _, _, observations = await api.get("/Observation?patient=Patient/nobody")
    assert (observations["total"], "entry" in observations) == (0, False)
    assert api.log_size() == size and api.appended == []


@pytest.mark.parametrize("query", [
    "", "_count=5", "_id=x", "identifier=urn:x|1", "_lastUpdated=gt2020-01-01",
    "patient=pat-1&date=gt2020", "patient=pat-1&_sort=_lastUpdated",
    "patient:identifier=urn:x|1", "patient=pat-1&patient=pat-2", "patient=a/b/c",
    "patient=pat-1&_cursor=%%%",
], ids=["none", "count-only", "_id", "identifier", "_lastUpdated", "date", "sort",
        "modifier", "two-patients", "bad-reference", "bad-cursor"])
async def test_a_search_without_one_patient_or_with_other_parameters_is_400(
        api: Api, query: str) -> None:
    size = api.log_size()
    status, _, outcome = await api.get(f"/AuditEvent?{query}")
    assert status == 400, outcome
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in outcome["issue"]] == ["invalid"]
    assert api.log_size() == size  # nothing was read, nothing audited


async def test_sort_by_date_is_the_order_served(api: Api) -> None:
    status, _, bundle = await api.get("/AuditEvent?patient=pat-1&_sort=date")
    assert status == 200 and ids(bundle)[:2] == [e["id"] for e in api.trail()][:2]


@pytest.mark.parametrize("token", [None, "not-a-known-token-0123456789abcdef0123456789"])
async def test_reading_the_accounting_needs_an_authenticated_client(
        api: Api, token: str | None) -> None:
    size = api.log_size()
    status, headers, outcome = await api.get("/AuditEvent?patient=pat-1", token=token)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert [i["code"] for i in outcome["issue"]] == ["login"] and "entry" not in outcome
    assert api.log_size() == size


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/AuditEvent"), ("GET", "/AuditEvent/some-id"), ("PUT", "/AuditEvent/some-id"),
    ("GET", "/AuditEvent/some-id/_history"),
])
async def test_only_search_is_offered(api: Api, method: str, path: str) -> None:
    async with api.http.request(method, api.url + path, data=b"{}", headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}) as r:
        assert r.status == 405


async def test_capability_lists_audit_event_search_by_patient(api: Api) -> None:
    async with api.http.get(api.url + "/metadata") as resp:
        caps = json.loads(await resp.text())
    (audit,) = [r for r in caps["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    assert audit["interaction"] == [{"code": "search-type"}]
    assert [(p["name"], p["type"], p["definition"]) for p in audit["searchParam"]] == [
        ("patient", "reference", "http://hl7.org/fhir/SearchParameter/AuditEvent-patient")]
    observation_caps = next(r for r in caps["rest"][0]["resource"]
                            if r["type"] == "Observation")
    assert "_id" in {p["name"] for p in observation_caps["searchParam"]}


async def test_a_tampered_audit_event_is_a_500_and_releases_nothing(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    victim = api.trail()[1]["id"]
    conn = api.env.connect()
    try:
        row, body = conn.execute("SELECT row, body FROM resources WHERE id = ?",
                                 (victim,)).fetchone()
        flipped = bytearray(body)
        flipped[40] ^= 0x01
        with conn:
            conn.execute("UPDATE resources SET body = ? WHERE row = ?", (bytes(flipped), row))
    finally:
        conn.close()
    size = api.log_size()
    with caplog.at_level(logging.INFO):
        status, _, outcome = await api.get("/AuditEvent?patient=Patient/pat-1")
    assert status == 500
    assert [i["code"] for i in outcome["issue"]] == ["exception"] and "entry" not in outcome
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.exc_info) for r in errors] == [("edge.fhirapi.service", None)]
    fields = getattr(errors[0], "fields", {})
    assert (fields.get("table"), fields.get("row"), fields.get("type")) == (
        "resources", row, "AuditEvent")
    logged = caplog.text + repr([getattr(r, "fields", None) for r in caplog.records])
    assert "Traceback" not in logged and "pat-1" not in logged and "MRN1" not in logged
    assert api.service.counts["integrity_failures"] == 1
    assert api.log_size() == size  # failed before the audit: nothing read, nothing written


async def test_a_failed_audit_commit_is_503_and_releases_nothing(api: Api) -> None:
    conn = api.env.connect()
    try:
        with conn:
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON resources BEGIN "
                         "SELECT RAISE(ABORT, 'refused by the test'); END")
    finally:
        conn.close()
    status, headers, outcome = await api.get("/AuditEvent?patient=pat-1")
    assert (status, headers.get("Retry-After")) == (503, "5")
    assert outcome["resourceType"] == "OperationOutcome" and "entry" not in outcome
    assert api.appended == []
