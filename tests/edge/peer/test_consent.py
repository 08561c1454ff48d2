"""Consent resources: built, read back into rules, refused when malformed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from edge.peer.consent import ConsentSpec, build_consent, provisions_of
from edge.peer.errors import ConsentInputError

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_round_trip() -> None:
    spec = ConsentSpec(facilities=("b",), practitioners=("c/dr-y",), purposes=("TREAT",),
                       classes=("Observation",), categories=("laboratory",), labels=("HIV", "R"),
                       start=date(2026, 1, 1), end=date(2026, 12, 31))
    consent = build_consent(spec, patient_id="pat-1", now=NOW, consent_id="k1")
    assert consent["patient"] == {"reference": "Patient/pat-1"}
    [rule] = provisions_of(consent)
    assert (rule.consent_id, rule.permit, rule.facilities, rule.practitioners) == (
        "k1", True, frozenset({"b"}), frozenset({"c/dr-y"}))
    assert (rule.purposes, rule.classes, rule.codes, rule.labels) == (
        frozenset({"TREAT"}), frozenset({"Observation"}), frozenset({"laboratory"}),
        frozenset({"HIV", "R"}))
    assert (rule.start, rule.end) == (date(2026, 1, 1), date(2026, 12, 31))
    assert provisions_of({**consent, "status": "inactive"}) == []
    [deny] = provisions_of(build_consent(ConsentSpec(deny=True), patient_id="p", now=NOW))
    assert not deny.permit and deny.blanket


@pytest.mark.parametrize("spec", [ConsentSpec(purposes=("SHOPPING",)),
                                  ConsentSpec(labels=("X",)),
                                  ConsentSpec(practitioners=("no-facility",)),
                                  ConsentSpec(start=date(2026, 2, 1), end=date(2026, 1, 1))])
def test_bad_specs(spec: ConsentSpec) -> None:
    with pytest.raises(ConsentInputError):
        build_consent(spec, patient_id="p", now=NOW)


@pytest.mark.parametrize(("change", "path"), [
    ({"provision": None}, "Consent.provision"),
    ({"provision": {"type": "maybe"}}, "Consent.provision.type"),
    ({"provision": {"type": "permit", "actor": [{"reference": {"identifier": {
        "system": "urn:other", "value": "x"}}}]}}, "actor"),
    ({"provision": {"type": "permit", "purpose": [{"code": "NOPE"}]}}, "purpose"),
    ({"provision": {"type": "permit", "period": {"start": "soon"}}}, "period.start"),
])
def test_malformed_consents_name_the_element(change: dict[str, Any], path: str) -> None:
    consent = {**build_consent(ConsentSpec(), patient_id="p", now=NOW), **change}
    with pytest.raises(ConsentInputError, match=path):
        provisions_of(consent)
