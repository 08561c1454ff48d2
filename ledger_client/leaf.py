"""Our log's leaves: one per record version.

``leaf_data = salt || RFC 8785 canonical JSON of the resource``, so the leaf hash is
SHA-256(0x00 || salt || JCS bytes) (RFC 9162 2.1.1 with our entry format). The salt is 32
random bytes per record version, stored encrypted with the record and disclosed only with
it: without it nobody holding the public log can test a guess of a record against a leaf.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from enum import Enum
from typing import Any

import orjson
import rfc8785

from ledger_client.errors import LedgerError
from ledger_client.merkle import leaf_hash

SALT_SIZE = 32


class LeafError(LedgerError):
    """A resource that has no canonical form (not JSON-serializable, NaN, huge integers), or
    a salt of the wrong size."""


def new_salt() -> bytes:
    """32 bytes from the OS CSPRNG, one per record version."""
    return secrets.token_bytes(SALT_SIZE)


def canonical_json(resource: Mapping[str, Any] | str | bytes, *,
                   layout_known: bool = False) -> bytes:
    """RFC 8785 (JCS) bytes of a resource given parsed, or as JSON text.

    ``layout_known``: the caller built ``resource`` only of what :func:`_json_layout` admits
    as it is (dicts with ASCII string keys, lists, strings, booleans, None, integers within
    2**53 - 1; no floats, no other types), so that walk is skipped. Only for a builder whose
    test checks each of its shapes with the walk (the AuditEvents: 6 per peer lookup, the
    walk 11 µs each against orjson's 2)."""
    if isinstance(resource, str | bytes):
        try:
            resource = json.loads(resource)
        except ValueError as exc:
            # The position helps find the fault; the content is never echoed.
            raise LeafError(f"resource is not JSON (error at offset {getattr(exc, 'pos', '?')})"
                            ) from None
        layout_known = False
    layout = _Layout.AS_IS if layout_known else _json_layout(resource)
    if layout is not _Layout.RFC8785:
        # On the values _json_layout admits, orjson's bytes (keys sorted) are RFC 8785's:
        # tested against rfc8785 (tests/ledger_client/test_leaf.py, and every converted
        # corpus resource). Measured on a 2.5 KB AuditEvent: rfc8785 ~260 µs, json.dumps
        # (sorted, compact, as UTF-8) 22 µs, orjson 2 µs; the peer workers serialize three
        # such events per request, and this was their largest single cost (13% of the GIL).
        node = resource if layout is _Layout.AS_IS else _integral_floats_as_ints(resource)
        try:
            return orjson.dumps(node, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate, or nesting orjson refuses: rfc8785 below decides
    try:
        return rfc8785.dumps(resource)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise LeafError(f"resource has no RFC 8785 form: {exc.__class__.__name__}") from None


class _Layout(Enum):
    AS_IS = "orjson"
    INTEGRAL_FLOATS = "orjson, integral floats as ints"
    RFC8785 = "rfc8785"


_EXACT_INT = 2**53 - 1  # RFC 8785 numbers are IEEE-754 doubles (section 3.2.2.3)
_FLOAT_SAME_LAYOUT = 1e-4  # from here up (to 2**53), no exponent either way (_json_layout)


def _json_layout(node: Any) -> _Layout:
    """Whether ``orjson.dumps`` with sorted keys (no whitespace, UTF-8, the escapes JCS
    requires) yields the RFC 8785 bytes of ``node``. It does for strings, booleans, null,
    integers a double holds exactly, lists and objects whose keys are ASCII (JCS sorts keys by
    UTF-16 code units, orjson by code points: they agree on the BMP, ASCII is the cheap
    test), and for the floats results carry; not for the other types orjson would serialize
    (UUIDs, enums, datetimes), which JCS has no form for.

    Floats: JCS formats numbers as ECMAScript's Number::toString (RFC 8785 3.2.2.3). orjson
    prints the same shortest digits that round-trip; the layouts differ for an integral value
    (``13.0`` vs ``13``) and from 1e16, where orjson switches to an exponent and ECMAScript
    only from 1e21 (both use one below 1e-6; the bound below is 1e-4, where ``json.dumps``,
    used here before orjson, switched, and stays conservative). A finite, non-integral float
    of magnitude at least 1e-4 (every non-integral double is below 2**53) is laid out the
    same by both. An integral float below 2**53 is printed by ECMAScript as the integer it equals
    (doubles are spaced at most 1 apart there, so its shortest digits padded with zeros are
    that integer): as ``orjson.dumps`` prints ``int(value)``."""
    layout = _Layout.AS_IS
    stack = [node]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, value in item.items():
                if type(key) is not str or not key.isascii():
                    return _Layout.RFC8785
                stack.append(value)
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not -_EXACT_INT <= item <= _EXACT_INT:
                return _Layout.RFC8785
        elif kind is float:
            # NaN and the infinities fail the range test (a comparison with NaN is False).
            if not abs(item) < _EXACT_INT:
                return _Layout.RFC8785
            if item.is_integer():
                layout = _Layout.INTEGRAL_FLOATS
            elif abs(item) < _FLOAT_SAME_LAYOUT:
                return _Layout.RFC8785
        elif kind is not str and kind is not bool and item is not None:
            return _Layout.RFC8785
    return layout


def _integral_floats_as_ints(node: Any) -> Any:
    """A copy of ``node`` with each integral float replaced by the int it equals (only for
    nodes :func:`_json_layout` admitted)."""
    kind = type(node)
    if kind is dict:
        return {key: _integral_floats_as_ints(value) for key, value in node.items()}
    if kind is list:
        return [_integral_floats_as_ints(value) for value in node]
    if kind is float and node.is_integer():
        return int(node)
    return node


def leaf_data(resource: Mapping[str, Any] | str | bytes, salt: bytes) -> bytes:
    """The log entry for a record version: salt || JCS(resource)."""
    if len(salt) != SALT_SIZE:
        raise LeafError(f"salt must be {SALT_SIZE} bytes, got {len(salt)}")
    return bytes(salt) + canonical_json(resource)


def record_leaf(resource: Mapping[str, Any] | str | bytes, salt: bytes) -> bytes:
    """The leaf hash of a record version: SHA-256(0x00 || salt || JCS(resource))."""
    return leaf_hash(leaf_data(resource, salt))
