"""Leaves: SHA-256(0x00 || salt || RFC 8785 bytes)."""

from __future__ import annotations

import hashlib

import pytest

from ledger_client.leaf import LeafError, canonical_json, new_salt, record_leaf

RESOURCE = {"resourceType": "Observation", "id": "o1",
            "valueQuantity": {"value": 1.50, "unit": "mg"},
            "status": "final"}


def test_leaf_is_salted_hash_of_canonical_json() -> None:
    salt = bytes(range(32))
    jcs = (b'{"id":"o1","resourceType":"Observation","status":"final",'
           b'"valueQuantity":{"unit":"mg","value":1.5}}')
    assert canonical_json(RESOURCE) == jcs
    assert record_leaf(RESOURCE, salt) == hashlib.sha256(b"\x00" + salt + jcs).digest()


def test_same_record_in_any_key_order_or_spacing_gives_the_same_leaf() -> None:
    salt = new_salt()
    text = '{ "status" : "final", "valueQuantity": {"unit": "mg", "value": 1.5},' \
           ' "id": "o1", "resourceType": "Observation" }'
    assert record_leaf(text, salt) == record_leaf(RESOURCE, salt)
    assert record_leaf(text.encode(), salt) == record_leaf(RESOURCE, salt)


def test_salt_and_content_both_matter() -> None:
    salt = new_salt()
    assert new_salt() != salt and len(salt) == 32
    assert record_leaf(RESOURCE, salt) != record_leaf(RESOURCE, new_salt())
    assert record_leaf(RESOURCE, salt) != record_leaf({**RESOURCE, "status": "amended"}, salt)


def test_bad_input_is_refused_without_echoing_content() -> None:
    with pytest.raises(LeafError, match="salt"):
        record_leaf(RESOURCE, b"short")
    with pytest.raises(LeafError) as err:
        record_leaf('{"name": "SECRET-PATIENT"', new_salt())
    assert "SECRET" not in str(err.value)
    with pytest.raises(LeafError):
        record_leaf({"x": float("nan")}, new_salt())


# -- the fast path of canonical_json agrees with rfc8785 byte for byte ------------------------

import rfc8785  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30)


@settings(max_examples=400)
@given(_json)
def test_canonical_json_equals_rfc8785(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, UnicodeEncodeError):
        return  # no canonical form: canonical_json raises LeafError (tested above)
    assert canonical_json({"v": value}) == rfc8785.dumps({"v": value})
    assert expected  # and the value itself round-trips through the same path


# Floats at the edges of the layouts Python's repr and ECMAScript's Number::toString share.
_EDGE_FLOATS = [0.5, -0.5, 123.456, 1 / 3, 13.0, -0.0, 0.0, 1e-4, -1e-4, 9.999999999999999e-05,
                1e-5, 1e-6, 1e-7, 5e-324, 2.0**52 + 0.5, 2.0**52 - 0.5, 1e15 + 0.25, 1e15,
                1e16, 2.0**53 - 1, 2.0**53, 2.0**60, -(2.0**53 - 1), 1e21, 1e22,
                1.7976931348623157e308, 0.1 + 0.2]


@pytest.mark.parametrize("value", _EDGE_FLOATS, ids=repr)
def test_canonical_json_of_edge_floats_equals_rfc8785(value: float) -> None:
    assert canonical_json({"v": [value, {"w": value}]}) == rfc8785.dumps(
        {"v": [value, {"w": value}]})


def test_typical_result_values_take_the_fast_path() -> None:
    from ledger_client.leaf import _json_layout, _Layout

    assert _json_layout({"valueQuantity": {"value": 13.5}, "low": 0.0001}) is _Layout.AS_IS
    assert _json_layout({"low": {"value": 12.0}, "n": [3]}) is _Layout.INTEGRAL_FLOATS
    # Exponent layouts, unsafe integers and non-finite values go through rfc8785.
    for value in (1e-5, 2.0**53, float("inf"), float("nan"), 2**60):
        assert _json_layout({"value": value}) is _Layout.RFC8785
