"""The FHIR R4 API against the real daemon on loopback, driven by a third-party client
(fhirpy) where it can be, and by plain HTTP for headers and error cases."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as OutcomeError

from adapters.tls import client_context
from edge.devca import IssuedCert, issue
from edge.inbox.schema import TABLE as INBOX
from edge.store.schema import RESOURCES
from tests.integration.conftest import RunningDaemon, daemon_with

SYSTEM = "urn:oid:2.16.840.1.113883.3.1234"
LOINC = "http://loinc.org"


def base_url(running: RunningDaemon) -> str:
    return f"http://{running.daemon.bound['fhir'][0]}"


def patient(mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient",
            "identifier": [{"system": SYSTEM, "value": mrn,
                            "type": {"coding": [{"code": "MR"}]}}],
            "name": [{"family": "Testperson", "given": ["Alex"]}], "birthDate": "1970-01-01"}


def observation(subject: str, code: str = "718-7", status: str = "final",
                when: str = "2024-05-01T10:00:00Z") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                      "observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": subject}, "effectiveDateTime": when,
            "valueQuantity": {"value": 13.2, "unit": "g/dL"}}


async def create(client: AsyncFHIRClient, body: dict[str, Any]) -> Any:
    """fhirpy's resource API: POST, then the resource holds what the server returned."""
    resource = client.resource(body["resourceType"], **body)
    await resource.save()
    return resource


def resource_rows(running: RunningDaemon) -> int:
    with sqlite3.connect(running.settings.storage.dir / "edge.db") as conn:
        return int(conn.execute(f"SELECT count(*) FROM {RESOURCES}").fetchone()[0])


@pytest.fixture
async def fhir(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with daemon_with(tmp_path / "inst") as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def send(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, Mapping[str, str], dict[str, Any]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    merged = {"Content-Type": "application/fhir+json", **(headers or {})}
    async with http.request(method, url, data=data, headers=merged) as response:
        text = await response.text()
        return response.status, response.headers.copy(), json.loads(text) if text else {}


def diagnostics(outcome: dict[str, Any]) -> str:
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return str(outcome["issue"][0]["diagnostics"])


async def test_metadata_lists_what_is_supported(fhir: RunningDaemon,
                                                http: aiohttp.ClientSession) -> None:
    status, headers, body = await send(http, "GET", f"{base_url(fhir)}/metadata")
    assert status == 200 and headers["Content-Type"].startswith("application/fhir+json")
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    rest = body["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    observation_caps = next(r for r in rest["resource"] if r["type"] == "Observation")
    params = {p["name"] for p in observation_caps["searchParam"]}
    assert params == {"_id", "identifier", "_lastUpdated", "patient", "subject", "code",
                      "category", "status", "date"}
    assert "export" not in json.dumps(rest.get("operation", []))  # we do not offer $export
    # Every type the HL7 v2 maps store can be read back, ChargeItem (FT1) and Device (PRT) too.
    charge_caps = next(r for r in rest["resource"] if r["type"] == "ChargeItem")
    assert {"patient", "code", "occurrence"} <= {p["name"] for p in charge_caps["searchParam"]}
    assert any(r["type"] == "Device" for r in rest["resource"])


async def test_fhirpy_create_update_search_and_transaction(fhir: RunningDaemon) -> None:
    client = AsyncFHIRClient(base_url(fhir))
    pat = await create(client, patient("MRN-1"))
    assert pat.id and pat["meta"]["versionId"] == "1"
    obs = await create(client, observation(f"Patient/{pat.id}"))
    assert obs["meta"]["versionId"] == "1"
    obs["status"] = "amended"
    await obs.save()  # PUT Observation/id
    assert obs["meta"]["versionId"] == "2" and obs["status"] == "amended"

    found = await client.resources("Observation").search(
        patient=f"Patient/{pat.id}", code=f"{LOINC}|718-7", status="amended").fetch_all()
    assert [o.id for o in found] == [obs.id]
    assert await client.resources("Observation").search(
        patient=f"Patient/{pat.id}", status="final").fetch_all() == []
    by_identifier = await client.resources("Patient").search(
        identifier=f"{SYSTEM}|MRN-1").fetch_all()
    assert [p.id for p in by_identifier] == [pat.id]

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
         "resource": patient("MRN-2"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation("urn:uuid:00000000-0000-4000-8000-000000000001", "2345-7"),
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    response = await client.execute("/", method="post", data=bundle)
    assert response["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    new_patient = response["entry"][0]["resource"]["id"]
    # The temporary reference became the server-assigned id (R4 3.1.0.11.2).
    assert response["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{new_patient}"
    got = await client.resources("Observation").search(subject=f"Patient/{new_patient}",
                                                      code="2345-7").fetch_all()
    assert len(got) == 1


async def test_everything_takes_the_inbox_store_and_ledger_path(
        fhir: RunningDaemon, http: aiohttp.ClientSession) -> None:
    status, _, created = await send(http, "POST", f"{base_url(fhir)}/Patient", patient("L-1"))
    assert status == 201
    with sqlite3.connect(fhir.settings.storage.dir / "edge.db") as conn:
        rows = conn.execute(f"SELECT message_type, state, listener FROM {INBOX}").fetchall()
        ledger = conn.execute(f"SELECT ledger_index FROM {RESOURCES} WHERE id = ?",
                              (created["id"],)).fetchone()
    assert rows == [("FHIR^create", "processed", "fhir")]
    assert ledger is not None and ledger[0] is not None


async def test_read_vread_history_etag_and_if_match(fhir: RunningDaemon,
                                                    http: aiohttp.ClientSession) -> None:
    base = base_url(fhir)
    status, headers, created = await send(http, "POST", f"{base}/Patient", patient("E-1"))
    assert status == 201 and headers["ETag"] == 'W/"1"'
    rid = created["id"]
    assert headers["Location"] == f"{base}/Patient/{rid}/_history/1"
    changed = {**created, "gender": "female"}
    status, headers, body = await send(http, "PUT", f"{base}/Patient/{rid}", changed,
                                       {"If-Match": 'W/"1"'})
    assert status == 200 and headers["ETag"] == 'W/"2"' and body["gender"] == "female"
    rows = resource_rows(fhir)
    status, _, body = await send(http, "PUT", f"{base}/Patient/{rid}", changed,
                                 {"If-Match": 'W/"1"'})
    assert status == 412 and "If-Match" in diagnostics(body)
    assert resource_rows(fhir) == rows
    status, _, old = await send(http, "GET", f"{base}/Patient/{rid}/_history/1")
    assert status == 200 and "gender" not in old and old["meta"]["versionId"] == "1"
    status, _, history = await send(http, "GET", f"{base}/Patient/{rid}/_history")
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    status, _, body = await send(http, "GET", f"{base}/Patient/nope")
    assert status == 404 and body["issue"][0]["code"] == "not-found"


async def test_conditional_create_returns_the_match(fhir: RunningDaemon,
                                                    http: aiohttp.ClientSession) -> None:
    base = base_url(fhir)
    condition = {"If-None-Exist": f"identifier={SYSTEM}|C-1"}
    status, _, first = await send(http, "POST", f"{base}/Patient", patient("C-1"), condition)
    assert status == 201
    rows = resource_rows(fhir)
    status, _, second = await send(http, "POST", f"{base}/Patient", patient("C-1"), condition)
    assert status == 200 and second["id"] == first["id"]
    assert resource_rows(fhir) == rows


async def test_search_pages_with_next_links(fhir: RunningDaemon) -> None:
    client = AsyncFHIRClient(base_url(fhir))
    pat = await create(client, patient("P-1"))
    for day in range(1, 6):
        await create(client, observation(
            f"Patient/{pat.id}", when=f"2024-05-0{day}T08:00:00Z"))
    # fhirpy follows Bundle.link next; _count=2 makes three pages.
    ids = [o.id async for o in client.resources("Observation").search(
        patient=pat.id).limit(2)]
    assert len(ids) == 5 and len(set(ids)) == 5
    may = await client.resources("Observation").search(
        subject=f"Patient/{pat.id}", date=["ge2024-05-02", "lt2024-05-04"]).fetch_all()
    assert len(may) == 2
    # A type scan (no patient): _lastUpdated paging, as a downstream poller asks.
    scanned = [o.id async for o in client.resources("Observation").search(
        _lastUpdated="ge2000-01-01", category="laboratory").limit(2)]
    assert sorted(scanned) == sorted(ids)


async def test_invalid_input_gets_an_outcome_naming_the_problem(
        fhir: RunningDaemon, http: aiohttp.ClientSession) -> None:
    base = base_url(fhir)
    status, _, body = await send(http, "POST", f"{base}/Patient", raw=b'{"resourceType": ')
    assert status == 400 and "not valid JSON" in diagnostics(body)
    status, _, body = await send(http, "POST", f"{base}/Observation",
                                 observation("Patient/x", status="bogus"))
    assert status in (400, 422)
    status, _, body = await send(http, "POST", f"{base}/Patient",
                                 {**patient("I-1"), "birthDate": "1970-02-30"})
    assert status == 400 and body["issue"][0]["expression"] == ["Patient.birthDate"]
    status, _, body = await send(http, "POST", f"{base}/Patient",
                                 {**patient("I-2"), "favouriteColour": "blue"})
    assert status == 400 and "Patient.favouriteColour" in diagnostics(body)
    status, _, body = await send(http, "POST", f"{base}/Observation",
                                 observation("Patient/unknown"))
    assert status == 422 and "Observation.subject.reference" in diagnostics(body)
    status, _, body = await send(http, "POST", f"{base}/Patient",
                                 {"resourceType": "Patient", "name": [{"family": "X"}]})
    assert status == 422 and "identifier" in diagnostics(body)
    status, _, body = await send(http, "POST", f"{base}/Patient", patient("I-3"),
                                 {"Content-Type": "text/plain"})
    assert status == 415
    status, _, body = await send(http, "GET", f"{base}/Observation?color=red")
    assert status == 400 and "color" in diagnostics(body)
    status, _, body = await send(http, "GET", f"{base}/Patient?identifier=no-system")
    assert status == 400 and "SYSTEM|VALUE" in diagnostics(body)
    assert resource_rows(fhir) == 0  # nothing of the above was stored


async def test_failed_transaction_stores_nothing(fhir: RunningDaemon,
                                                 http: aiohttp.ClientSession) -> None:
    base = base_url(fhir)
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-00000000000a",
         "resource": patient("T-1"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation("urn:uuid:00000000-0000-4000-8000-00000000000a"),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {**observation("urn:uuid:00000000-0000-4000-8000-00000000000a"),
                      "valueQuantity": {"value": "lots"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    status, _, body = await send(http, "POST", f"{base}/", bad)
    assert status == 400
    assert body["issue"][0]["expression"] == ["Bundle.entry[2].resource.valueQuantity.value"]
    assert resource_rows(fhir) == 0
    status, _, found = await send(http, "GET", f"{base}/Patient?identifier={SYSTEM}|T-1")
    assert status == 200 and "entry" not in found
    # Two patients in one transaction: a business rule (one key seals one request).
    two = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("T-2"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("T-3"), "request": {"method": "POST", "url": "Patient"}}]}
    status, _, body = await send(http, "POST", f"{base}/", two)
    assert status == 422 and resource_rows(fhir) == 0


async def test_batch_entries_stand_alone(fhir: RunningDaemon,
                                         http: aiohttp.ClientSession) -> None:
    base = base_url(fhir)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("B-1"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**patient("B-2"), "gender": "robot"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("B-3"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={SYSTEM}|B-1"}},
    ]}
    status, _, body = await send(http, "POST", f"{base}/", batch)
    assert status == 200 and body["type"] == "batch-response"
    codes = [e["response"]["status"].split()[0] for e in body["entry"]]
    assert codes == ["201", "400", "201", "200"]
    assert "Patient.gender" in json.dumps(body["entry"][1]["response"]["outcome"])
    assert resource_rows(fhir) == 2


async def test_bearer_tokens_and_no_anonymous_access(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# local clients\nehr sha256:"
                      + hashlib.sha256(b"s3cret-token-for-tests").hexdigest() + "\n")
    replace = {"allow_anonymous_loopback = true":
               f'allow_anonymous_loopback = false\ntokens_file = "{tokens}"'}
    async with daemon_with(tmp_path / "inst", replace=replace) as running, \
            aiohttp.ClientSession() as http:
        url = f"{base_url(running)}/Patient"
        status, headers, _ = await send(http, "POST", url, patient("A-1"))
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        status, _, _ = await send(http, "POST", url, patient("A-1"),
                                  {"Authorization": "Bearer wrong"})
        assert status == 401
        client = AsyncFHIRClient(base_url(running), authorization="Bearer s3cret-token-for-tests")
        created = await create(client, patient("A-1"))
        assert created.id
        with sqlite3.connect(running.settings.storage.dir / "edge.db") as conn:
            sender = conn.execute(f"SELECT sending_application FROM {INBOX}").fetchall()
        assert sender == [("ehr",)]
        status, _, _ = await send(http, "GET", f"{base_url(running)}/metadata")
        assert status == 200  # the CapabilityStatement is public


async def test_fhirpy_sees_errors_as_operation_outcomes(fhir: RunningDaemon) -> None:
    client = AsyncFHIRClient(base_url(fhir))
    with pytest.raises(OutcomeError) as info:
        await create(client, observation("Patient/ghost"))
    assert "subject" in str(info.value)


async def test_mutual_tls_names_the_client(tmp_path: Path) -> None:
    tls = ('allow_anonymous_loopback = false\n'
           'tls = { cert = "tls/node.pem", key = "tls/node-key.pem", client_ca = "tls/ca.pem" }')
    instance = tmp_path / "inst"
    async with daemon_with(instance, replace={"allow_anonymous_loopback = true": tls}) as running:
        ca = IssuedCert(instance / "tls" / "ca.pem", instance / "tls" / "ca-key.pem")
        client_cert = issue(ca, tmp_path, "client", common_name="ehr-client")
        url = f"https://{running.daemon.bound['fhir'][0]}/Patient"
        with_cert = client_context(ca=ca.cert, cert=client_cert.cert, key=client_cert.key)
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=json.dumps(patient("TLS-1")), ssl=with_cert,
                                 headers={"Content-Type": "application/fhir+json"}) as response:
                assert response.status == 201
            # No certificate: the handshake fails (no tokens file, so the cert is required).
            with pytest.raises(aiohttp.ClientError):
                async with http.get(url, ssl=client_context(ca=ca.cert)) as response:
                    await response.read()
        with sqlite3.connect(running.settings.storage.dir / "edge.db") as conn:
            sender = conn.execute(f"SELECT sending_application FROM {INBOX}").fetchall()
        assert sender == [("ehr-client",)]
