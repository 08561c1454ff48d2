"""Hypothesis properties the per-module tests do not already state: whatever a sender does
to a message, conversion fails only with :class:`NormalizeError` (anything else would leave
the message ``received`` and retried forever by the processing stage), and what converts can
be stored (every resource has its RFC 8785 form, the ledger leaf). The tokenizer, framer and
ASTM link have their own arbitrary-input properties (tests/edge/er7, tests/adapters/...).

Examples per property: ``HIE_HYPOTHESIS_EXAMPLES`` (CI default below; ``make fuzz-long``
raises it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge.astm.errors import RecordError
from edge.astm.profile import DeviceProfile
from edge.astm.records import parse_message
from edge.normalize import NormalizeContext, NormalizeError, normalize
from edge.normalize.astm import normalize_astm
from edge.normalize.fhir_json import ENVELOPE, SUPPORTED_TYPES, envelope, normalize_fhir
from ledger_client.leaf import canonical_json
from tests.adapters.serial.astm_support import SAMPLES
from tests.corpus import iter_single_messages
from tests.faults.support import env_int

EXAMPLES = env_int("HIE_HYPOTHESIS_EXAMPLES", 150)
CONTEXT = NormalizeContext("prop-facility", timezone="America/Chicago",
                           identifier_systems={"HOSP": "urn:oid:2.16.840.1.113883.3.1234"})
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Bytes that mean something in ER7 and ASTM: delimiters, segment ends, escapes, digits.
SPECIAL = st.sampled_from([b"|", b"^", b"~", b"\\", b"&", b"#", b"\r", b"\n", b"\x00", b"\"\"",
                           b"\\X0D\\", b"\\E\\", b"9" * 30, b"-", b"+", b".", b"\xff", b"\xc3"])


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    """One of ``originals`` changed a few times: bytes replaced, inserted, deleted, a range
    duplicated, or cut short -- the ways a sender's message goes wrong."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.integers(0, 4))
        if kind == 0:
            data[at:at + 1] = draw(SPECIAL | st.binary(min_size=1, max_size=3))
        elif kind == 1:
            data[at:at] = draw(SPECIAL)
        elif kind == 2:
            del data[at:at + draw(st.integers(1, 40))]
        elif kind == 3:
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[end:end] = data[at:end]
        else:
            del data[at:]
    return bytes(data)


def storable(resources: tuple[dict[str, Any], ...]) -> None:
    for resource in resources:
        canonical_json(resource)
        assert isinstance(resource.get("id"), str) and resource["id"]


@pytest.fixture(scope="module")
def corpus(corpora_dir: Path) -> list[bytes]:
    messages = [raw for _, raw in iter_single_messages(corpora_dir)]
    assert len(messages) > 500
    return messages[:: max(1, len(messages) // 300)]


def test_mutated_corpus_messages_fail_only_with_normalize_error(corpus: list[bytes]) -> None:
    @PROPERTY
    @given(mutated(corpus))
    def check(raw: bytes) -> None:
        try:
            result = normalize(raw, context=CONTEXT)
        except NormalizeError:
            event("refused")
            return
        event("converted")
        storable(result.resources)

    check()


@PROPERTY
@given(mutated(list(SAMPLES)))
def test_mutated_astm_messages_fail_only_with_normalize_error(raw: bytes) -> None:
    try:
        result = normalize_astm(raw, context=CONTEXT, profile=DeviceProfile())
    except NormalizeError:
        event("refused")
        return
    event("converted")
    storable(result.resources)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20)
ENTRY_KEYS = ["method", "type", "id", "fullUrl", "resource", "if_match", "if_none_exist"]
RESOURCE_KEYS = ["resourceType", "id", "subject", "patient", "identifier", "status", "code",
                 "meta", "valueQuantity", "effectiveDateTime", "name", "birthDate"]


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Intake envelopes right in shape and wrong in any value: types, ids, references,
    patients, preconditions."""
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        rtype = draw(st.sampled_from([*SUPPORTED_TYPES, "Bundle", ""]))
        resource: dict[str, Any] = {"resourceType": rtype,
                                    "id": draw(st.sampled_from(["a1", "", "x" * 70, "b-2"]))}
        for key in draw(st.lists(st.sampled_from(RESOURCE_KEYS), max_size=4, unique=True)):
            resource[key] = draw(JSON | st.just({"reference": "Patient/a1"}))
        entry: dict[str, Any] = {"method": draw(st.sampled_from(["POST", "PUT", "GET"])),
                                 "type": rtype, "id": resource["id"], "resource": resource}
        for key in draw(st.lists(st.sampled_from(ENTRY_KEYS), max_size=2, unique=True)):
            entry[key] = draw(JSON)
        entries.append(entry)
    patients = draw(st.dictionaries(st.sampled_from(["Patient/a1", "Patient/zz", "x"]),
                                    st.sampled_from(["urn:sys|1", "|", "", "a|b|c"]),
                                    max_size=2))
    body = json.loads(envelope(draw(st.sampled_from(["create", "update", "transaction"])),
                               "req-1", entries, patients))
    if draw(st.booleans()):
        body[draw(st.sampled_from(["interaction", "entries", "patients", "source",
                                   "version", "aliases"]))] = draw(JSON)
    assert body["envelope"] == ENVELOPE
    return json.dumps(body).encode()


def _accepted_envelopes() -> list[dict[str, Any]]:
    """Envelopes the intake accepts: our own ORU conversion's resources, sent back as FHIR."""
    from tests.faults.support import message

    out = []
    for seq in range(4):
        resources = normalize(message(f"P{seq}", seq), context=CONTEXT).resources
        entries = [{"method": "PUT", "type": r["resourceType"], "id": r["id"],
                    "fullUrl": f"urn:uuid:{r['id']}", "resource": r}
                   for r in resources if r["resourceType"] in SUPPORTED_TYPES]
        out.append(json.loads(envelope("transaction", f"req-{seq}", entries, {})))
        out.append(json.loads(envelope("update", f"req-{seq}u", entries[:1], {})))
    return out


ACCEPTED = _accepted_envelopes()


@st.composite
def changed_envelopes(draw: st.DrawFn) -> bytes:
    """An accepted envelope with a few values anywhere in it replaced or removed."""
    body = json.loads(json.dumps(draw(st.sampled_from(ACCEPTED))))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = body
        for _ in range(draw(st.integers(1, 6))):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if not isinstance(node[key], dict | list) or draw(st.booleans()):
                if draw(st.booleans()) and isinstance(node, dict):
                    del node[key]
                else:
                    node[key] = draw(JSON)
                break
            node = node[key]
    return json.dumps(body).encode()


def test_accepted_envelopes_are_accepted() -> None:
    for body in ACCEPTED:
        storable(normalize_fhir(json.dumps(body).encode(), context=CONTEXT).resources)


@PROPERTY
@given(envelopes() | changed_envelopes() | st.binary(max_size=200))
def test_fhir_intake_envelopes_fail_only_with_normalize_error(raw: bytes) -> None:
    try:
        result = normalize_fhir(raw, context=CONTEXT)
    except NormalizeError:
        event("refused")
        return
    event("converted")
    storable(result.resources)


# -- inputs the fuzzers found (fuzz/), kept as regressions -------------------------------------

def test_a_superscript_digit_as_astm_sequence_number_is_a_record_error() -> None:
    raw = b"H|\\^&|||ANALYZER\rP|\xb3||PID-1\rL|1|N\r"
    with pytest.raises(RecordError):
        parse_message(raw)
    with pytest.raises(NormalizeError):
        normalize_astm(raw, context=CONTEXT, profile=DeviceProfile())
