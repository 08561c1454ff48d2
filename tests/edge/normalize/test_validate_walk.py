"""The fast validation walk agrees with the reference walk (``_scan``/``shape``), and the
inlined UUIDv5 ids with :func:`uuid.uuid5`."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.normalize import NormalizeContext, NormalizeError, Validator, normalize
from edge.normalize import validate as v
from edge.normalize.conversion import _NAMESPACE, _uuid5
from tests.corpus import iter_all_messages

_KEYS = ["identifier", "system", "use", "telecom", "name", "address", "type", "value",
         "valueQuantity", "comparator", "code", "masterIdentifier", "status", "x"]
_STRINGS = st.one_of(
    st.sampled_from(["", " ", "a b", "a  b", " a", "home", "phone", "bogus", "<", "urn:x:1",
                     "not a uri", "2024", "2024-03", "2024-03-10", "2024-03-10T01:00:00Z",
                     "2024-03-10T01:00", "01:02:03", "12:00", "2024\n", "\u0663\u0660\u0662\u0664",
                     "tab\there", "\u00a0x", "x\u200b"]),
    st.text(max_size=12),
)
_SCALARS = st.one_of(_STRINGS, st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                     st.none())
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4),
    ),
    max_leaves=25,
)


def _reference_verdict(resource: dict[str, Any]) -> str:
    """The reference walk's signature, or the error it raises (a TypeError for a value no
    JSON has, e.g. a boolean Identifier.system: not something the mappers emit)."""
    try:
        return v.shape(resource)
    except NormalizeError as exc:
        return f"error {exc.path}"
    except TypeError:
        return "error TypeError"


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=5))
def test_fast_walk_fails_exactly_when_the_reference_does(body: dict[str, Any]) -> None:
    resource = {"resourceType": "Patient", **body}
    reference = _reference_verdict(resource)
    fast = v._fast_signature(resource)
    v._resource_bindings(resource)  # the Patient has no top-level bindings among _KEYS
    assert (fast is None) == reference.startswith("error ")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=4),
       st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=4))
def test_fast_signatures_group_resources_as_the_reference_does(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    ra, rb = {"resourceType": "Basic", **a}, {"resourceType": "Basic", **b}
    fa, fb = v._fast_signature(ra), v._fast_signature(rb)
    if fa is not None and fb is not None:
        assert (fa == fb) == (v.shape(ra) == v.shape(rb))


def _corpus_resources(corpora_dir: Path) -> list[dict[str, Any]]:
    ctx = NormalizeContext(facility_id="walk", timezone="America/Chicago", validation="off")
    out: list[dict[str, Any]] = []
    for _, raw in iter_all_messages(corpora_dir):
        try:
            out.extend(normalize(raw, context=ctx).resources)
        except NormalizeError:
            continue
    return out


def test_fast_signatures_match_the_reference_over_the_corpus(corpora_dir: Path) -> None:
    fast_to_ref: dict[str, set[str]] = {}
    ref_to_fast: dict[str, set[str]] = {}
    resources = _corpus_resources(corpora_dir)
    assert len(resources) > 1000
    for resource in resources:
        fast = v._fast_signature(resource)
        assert fast is not None
        ref = v.shape(resource)
        fast_to_ref.setdefault(fast, set()).add(ref)
        ref_to_fast.setdefault(ref, set()).add(fast)
    # One to one: the fast spelling neither merges nor splits the reference's shapes.
    assert all(len(refs) == 1 for refs in fast_to_ref.values())
    assert all(len(fasts) == 1 for fasts in ref_to_fast.values())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("identifier", 0, "system"), "not a uri"),
        (("telecom", 0, "use"), "cell"),
        (("name", 0, "use"), "nick"),
        (("address", 0, "type"), "mailing"),
        (("gender",), "F"),
        (("name", 0, "given"), []),
        (("birthDate",), None),
    ],
)
def test_shape_mode_raises_the_reference_error(path: tuple[Any, ...], value: Any) -> None:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "1"}],
        "telecom": [{"system": "phone", "use": "home", "value": "555"}],
        "name": [{"family": "F", "given": ["G"], "use": "official"}],
        "address": [{"type": "postal", "line": ["1 Main St"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
    }
    Validator("shape").validate(patient)
    node: Any = patient
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(NormalizeError) as reference:
        v._resource_bindings(patient)
        v.shape(patient)
    for mode in ("shape", "full", "off"):
        with pytest.raises(NormalizeError) as caught:
            Validator(mode).validate(patient)
        assert caught.value.path == reference.value.path
        assert caught.value.reason == reference.value.reason


@given(st.text(max_size=40))
def test_uuid5_matches_the_standard_library(name: str) -> None:
    try:
        expected = str(uuid.uuid5(_NAMESPACE, name))
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            _uuid5(name)
        return
    assert _uuid5(name) == expected


@pytest.mark.parametrize("status", [{"reference": "Patient/a1"}, ["booked"], 3, True])
def test_a_bound_code_that_is_not_a_string_is_a_normalize_error(status: Any) -> None:
    """Found by tests/faults/test_properties.py: a dict in a required-binding element made the
    value-set lookup raise TypeError (unhashable) instead of naming the element."""
    with pytest.raises(NormalizeError, match="code must be a string") as caught:
        v.own_checks({"resourceType": "Appointment", "id": "a1", "status": status})
    assert caught.value.path.endswith("status")
