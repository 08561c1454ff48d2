"""Units of the FHIR API without sockets: search values, auth, normalization of envelopes,
the poller's backoff."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.fhir.client import UpstreamError
from edge.config.model import FHIRSettings, FHIRSourceSettings
from edge.crypto.blind_index import parse_identifier_token
from edge.fhirapi.auth import Authenticator, TokensFileError, hash_token
from edge.fhirapi.outcome import FHIRAPIError
from edge.fhirapi.poller import SourcePoller, _offers_export, _split_reference
from edge.fhirapi.search import Token, date_range, parse_search, parse_token
from edge.normalize.context import NormalizeContext
from edge.normalize.errors import NormalizeError
from edge.normalize.fhir_json import envelope, http_status_of, normalize_fhir, patient_key_of, token

CTX = NormalizeContext("test-facility")


# -- search ---------------------------------------------------------------------------

def test_date_ranges_follow_precision() -> None:
    month = date_range("2024-02")
    assert month is not None
    assert (month.start, month.end) == (datetime(2024, 2, 1, tzinfo=UTC),
                                        datetime(2024, 3, 1, tzinfo=UTC))
    shifted = date_range("2024-02-01T10:00:00+02:00")
    assert shifted is not None and shifted.start == datetime(2024, 2, 1, 8, tzinfo=UTC)
    milli = date_range("2024-02-01T10:00:00.123Z")
    assert milli is not None and (milli.end - milli.start).microseconds == 1000
    assert date_range("2024-13-01") is None and date_range("yesterday") is None


@pytest.mark.parametrize(("value", "target", "expected"), [
    ("eq2024-05", "2024-05-10", True), ("eq2024-05", "2024-06-01", False),
    ("gt2024-05-10", "2024-05-10T12:00:00Z", False), ("gt2024-05-10", "2024-05-11", True),
    ("ge2024-05-10", "2024-05-10T12:00:00Z", True), ("lt2024-05-10", "2024-05-09", True),
    ("lt2024-05-10", "2024-05-10", False), ("le2024-05-10", "2024-05-10", True),
    ("ne2024-05-10", "2024-05-10", False), ("ne2024-05-10", "2024-05-11", True),
])
def test_date_prefixes(value: str, target: str, expected: bool) -> None:
    search = parse_search("Observation", [("date", value)], default_count=10, max_count=10)
    resource = {"resourceType": "Observation", "effectiveDateTime": target}
    assert search.matches(resource, "2024-01-01T00:00:00.000Z") is expected


def test_tokens_and_escapes() -> None:
    assert parse_token("http://loinc.org|718-7,|x,sys|", "code") == (
        Token("http://loinc.org", "718-7"), Token("", "x"), Token("sys", None))
    assert parse_token(r"a\,b", "code") == (Token(None, "a,b"),)
    search = parse_search("Observation", [("code", "http://loinc.org|718-7"),
                                          ("status", "final,amended")],
                          default_count=5, max_count=5)
    obs = {"code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
           "status": "amended"}
    assert search.matches(obs, "2024-01-01T00:00:00.000Z")
    assert not search.matches({**obs, "status": "preliminary"}, "2024-01-01T00:00:00.000Z")


@pytest.mark.parametrize(("query", "named"), [
    ([("colour", "red")], "colour"), ([("code:text", "x")], "code:text"),
    ([("identifier", "justavalue")], "identifier"), ([("date", "sa2024")], "date"),
    ([("_count", "-1")], "_count"), ([("_sort", "-date")], "_sort"),
    ([("_cursor", "!!")], "_cursor"), ([("patient", "Group/1")], "patient"),
])
def test_search_refuses_what_it_does_not_support(query: list[tuple[str, str]],
                                                 named: str) -> None:
    with pytest.raises(FHIRAPIError) as info:
        parse_search("Observation", query, default_count=5, max_count=5)
    assert info.value.status in (400, 406) and info.value.path == named


def test_count_is_capped() -> None:
    assert parse_search("Patient", [("_count", "9999")], default_count=5,
                        max_count=100).count == 100


# -- auth -----------------------------------------------------------------------------

def _settings(tmp_path: Path, **extra: Any) -> FHIRSettings:
    return FHIRSettings.model_validate({"bind": "127.0.0.1:0", **extra})


def test_bearer_tokens_by_hash_and_reloaded(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ehr {hash_token('one')}\n")
    auth = Authenticator(_settings(tmp_path, tokens_file=str(tokens)))
    assert auth.authenticate(authorization="Bearer one", peer_ip="10.0.0.1",
                             cert_subject=None).name == "ehr"
    with pytest.raises(FHIRAPIError) as info:
        auth.authenticate(authorization="Bearer two", peer_ip="10.0.0.1", cert_subject=None)
    assert info.value.status == 401
    # Revoking: the file changes, the next request sees it.
    tokens.write_text(f"lab {hash_token('two')}\n")
    os.utime(tokens, ns=(1, 2_000_000_000_000_000_000))
    assert auth.authenticate(authorization="Bearer two", peer_ip="10.0.0.1",
                             cert_subject=None).name == "lab"
    with pytest.raises(FHIRAPIError):
        auth.authenticate(authorization="Bearer one", peer_ip="10.0.0.1", cert_subject=None)
    assert "one" not in tokens.read_text() and hashlib.sha256(b"two").hexdigest() in \
        tokens.read_text()


def test_malformed_tokens_file_names_the_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# ok\nehr plaintext-token\n")
    with pytest.raises(TokensFileError, match="line 2"):
        Authenticator(_settings(tmp_path, tokens_file=str(tokens)))


def test_anonymous_only_on_loopback_and_only_when_allowed(tmp_path: Path) -> None:
    auth = Authenticator(_settings(tmp_path, allow_anonymous_loopback=True))
    assert auth.authenticate(authorization=None, peer_ip="127.0.0.1",
                             cert_subject=None).method == "anonymous"
    assert auth.authenticate(authorization=None, peer_ip="::ffff:127.0.0.1",
                             cert_subject=None).method == "anonymous"
    with pytest.raises(FHIRAPIError):
        auth.authenticate(authorization=None, peer_ip="192.168.1.5", cert_subject=None)
    assert auth.authenticate(authorization=None, peer_ip="192.168.1.5",
                             cert_subject="ehr-node").method == "mtls"


def test_config_needs_some_way_to_authenticate() -> None:
    with pytest.raises(ValueError, match="no client could authenticate"):
        FHIRSettings.model_validate({"bind": "127.0.0.1:0"})
    with pytest.raises(ValueError, match="absolute"):
        FHIRSettings.model_validate({"tokens_file": "relative/tokens"})


# -- normalization of envelopes -------------------------------------------------------

def _patient(*identifiers: dict[str, Any]) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if identifiers:
        patient["identifier"] = list(identifiers)
    return patient


def test_patient_key_prefers_mr_like_pid3() -> None:
    ssn = {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123"}
    mrn = {"system": "urn:x|odd", "value": "A,1", "type": {"coding": [{"code": "MR"}]}}
    key = patient_key_of(_patient(ssn, mrn))
    assert key is not None and parse_identifier_token(key) == ("urn:x|odd", "A,1")
    assert patient_key_of(_patient(ssn)) == token(ssn["system"], "123")
    assert patient_key_of(_patient({"value": "no-system"})) is None


def _obs(subject: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": subject}, **extra}


def test_envelope_keys_references_and_preconditions() -> None:
    entries: list[dict[str, Any]] = [
        {"method": "POST", "type": "Observation", "id": "o1", "fullUrl": "urn:uuid:o",
         "resource": _obs("Patient/p9"), "if_none_exist": "urn:x|1"},
        {"method": "PUT", "type": "Observation", "id": "o2",
         "resource": {**_obs("Patient/p9"), "id": "o2",
                      "hasMember": [{"reference": "urn:uuid:o"}]}, "if_match": 3}]
    message = normalize_fhir(envelope("transaction", "r", entries,
                                      {"Patient/p9": "urn:x|MRN9"}), context=CTX)
    assert message.patient_key == "urn:x|MRN9" and message.message_type == "FHIR^transaction"
    assert message.resources[1]["hasMember"] == [{"reference": "Observation/o1"}]
    assert [(p.path, p.version, p.absent) for p in message.preconditions] == [
        ("Bundle.entry[0].request", None, "urn:x|1"), ("Bundle.entry[1].request", 3, None)]


@pytest.mark.parametrize(("entries", "patients", "path", "status"), [
    ([{"method": "POST", "type": "Observation", "id": "o", "resource": _obs("Patient/zz")}],
     {}, "Bundle.entry[0].resource.subject.reference", 422),
    ([{"method": "POST", "type": "Observation", "id": "o",
       "resource": _obs("Patient/a", status="done")}], {"Patient/a": "s|1"},
     "Bundle.entry[0].resource.status", 400),
    ([{"method": "POST", "type": "Patient", "id": "p", "resource": _patient()}], {},
     "Bundle.entry[0].resource.identifier", 422),
    ([{"method": "POST", "type": "Observation", "id": "o", "resource": _obs("Patient/a")},
      {"method": "POST", "type": "Observation", "id": "o2", "resource": _obs("Patient/b")}],
     {"Patient/a": "s|1", "Patient/b": "s|2"}, "Bundle.entry", 422),
    ([{"method": "PUT", "type": "Observation", "id": "o", "resource": _obs("Patient/a")}],
     {"Patient/a": "s|1"}, "Bundle.entry[0].resource.id", 400),
    ([{"method": "POST", "type": "Basic", "id": "b", "resource": {"resourceType": "Basic"}}],
     {}, "Bundle.entry[0].resource.resourceType", 422),
    ([{"method": "POST", "type": "Patient", "id": "p",
       "resource": {"resourceType": "Patient", "identifier": []}}], {},
     "Bundle.entry[0].resource.identifier", 400),
])
def test_envelope_rejections_name_the_path(entries: list[dict[str, Any]],
                                           patients: dict[str, str], path: str,
                                           status: int) -> None:
    with pytest.raises(NormalizeError) as info:
        normalize_fhir(envelope("transaction", "r", entries, patients), context=CTX)
    assert info.value.path == path
    assert http_status_of(str(info.value)) == status


# -- poller ---------------------------------------------------------------------------

class _FailingClient:
    base_url = "http://upstream.invalid/fhir"

    def __init__(self) -> None:
        self.calls = 0

    async def capability(self) -> dict[str, Any]:
        self.calls += 1
        raise UpstreamError("GET metadata", 503, "not 200")

    async def aclose(self) -> None:
        return None


async def test_poller_backs_off_doubling_up_to_the_maximum() -> None:
    source = FHIRSourceSettings(name="up", base_url="http://upstream.invalid/fhir",
                                resource_types=("Patient",), interval_s=10, backoff_max_s=5)
    delays: list[float] = []
    done = asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 5:
            done.set()
            await asyncio.Event().wait()

    client = _FailingClient()
    poller = SourcePoller(source, client, None, None, sleep=sleep)  # type: ignore[arg-type]
    task = asyncio.create_task(poller.run())
    await done.wait()
    task.cancel()
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert poller.stats.failures == 5 and "503" in poller.stats.last_error


def test_export_detection_and_references() -> None:
    assert _offers_export({"rest": [{"operation": [{"name": "export", "definition": "x"}]}]})
    assert not _offers_export({"rest": [{"mode": "server"}]})
    assert _split_reference("http://h/fhir/Observation/1/_history/2") == ("Observation", "1")
    assert _split_reference("Patient/p") == ("Patient", "p")
