"""Validation of the FHIR R4 output: the R4B models plus our own checks.

The ``fhir.resources.R4B`` models check structure, cardinality and primitive formats; they do
not check required bindings or that ``Identifier.system`` is an absolute URI, so
:func:`own_checks` does (FHIR R4 section 2.24.0.1 identifiers; the required bindings of the
elements we emit, listed in :data:`REQUIRED_BINDINGS`).

Validating every resource with the models costs ~150 µs each (measured: bench/normalize.py),
which alone would hold a 20-segment ORU under the 1,000 messages/s target on two cores. In
``shape`` mode a resource is validated with its R4B model the first time its *shape* is seen:
its element names and nesting plus, for each primitive, its JSON type and a format class
(empty, no whitespace, single-spaced code-like, free text, date, dateTime, instant, time).
Two resources of one shape differ only in values the format class already says the models
would accept or reject alike (a ``code`` needs no leading/trailing or double whitespace, an
``id``/``uri`` no whitespace, a ``date``/``dateTime``/``instant`` its pattern), so a shape that
validated once validates again; every resource still gets :func:`own_checks`.

Every resource is walked (for the signature and our checks), so the walk is written twice:
:func:`_scan` is the reference, which names the path that fails, and ``_fast_signature`` the
one that runs, with the same checks in fewer Python operations; when it finds a failure the
reference runs to raise the error. Tests hold the two to the same verdicts and to signatures
that group resources alike (tests/edge/normalize/test_validate_walk.py).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from functools import cache
from typing import Any, Final

from pydantic import ValidationError

from edge.normalize.errors import NormalizeError

__all__ = ["REQUIRED_BINDINGS", "Validator", "own_checks"]

_ABSOLUTE_URI: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_DATE: Final = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_DATETIME: Final = re.compile(
    r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?$"
)
_INSTANT: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_TIME: Final = re.compile(r"^\d{2}:\d{2}:\d{2}(\.\d+)?$")
_CODE_LIKE: Final = re.compile(r"^\S+( \S+)*$")
_MAX_SHAPES: Final = 20_000

# (resource type or "*" for any datatype use, element) -> allowed codes (FHIR R4 required
# bindings of the elements this package emits).
REQUIRED_BINDINGS: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("RelatedPerson", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("Observation", "status"): frozenset(
        {
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("DiagnosticReport", "status"): frozenset(
        {
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("ServiceRequest", "status"): frozenset(
        {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
    ),
    ("ServiceRequest", "intent"): frozenset(
        {
            "proposal",
            "plan",
            "directive",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        }
    ),
    ("MedicationRequest", "status"): frozenset(
        {
            "active",
            "on-hold",
            "cancelled",
            "completed",
            "entered-in-error",
            "stopped",
            "draft",
            "unknown",
        }
    ),
    ("MedicationRequest", "intent"): frozenset(
        {
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        }
    ),
    ("Encounter", "status"): frozenset(
        {
            "planned",
            "arrived",
            "triaged",
            "in-progress",
            "onleave",
            "finished",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("Immunization", "status"): frozenset({"completed", "entered-in-error", "not-done"}),
    ("DocumentReference", "status"): frozenset({"current", "superseded", "entered-in-error"}),
    ("Appointment", "status"): frozenset(
        {
            "proposed",
            "pending",
            "booked",
            "arrived",
            "fulfilled",
            "cancelled",
            "noshow",
            "entered-in-error",
            "checked-in",
            "waitlist",
        }
    ),
    ("Coverage", "status"): frozenset({"active", "cancelled", "draft", "entered-in-error"}),
    ("Procedure", "status"): frozenset(
        {
            "preparation",
            "in-progress",
            "not-done",
            "on-hold",
            "stopped",
            "completed",
            "entered-in-error",
            "unknown",
        }
    ),
    ("*", "telecom.system"): frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"}),
    ("*", "telecom.use"): frozenset({"home", "work", "temp", "old", "mobile"}),
    ("*", "name.use"): frozenset(
        {"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"}
    ),
    ("*", "address.use"): frozenset({"home", "work", "temp", "old", "billing"}),
    ("*", "address.type"): frozenset({"postal", "physical", "both"}),
    ("*", "identifier.use"): frozenset({"usual", "official", "temp", "secondary", "old"}),
    ("*", "valueQuantity.comparator"): frozenset({"<", "<=", ">=", ">"}),
}
_BINDINGS_BY_TYPE: Final[dict[str, tuple[tuple[str, frozenset[str]], ...]]] = {}
for (_owner, _element), _codes in REQUIRED_BINDINGS.items():
    if _owner != "*":
        _BINDINGS_BY_TYPE[_owner] = (*_BINDINGS_BY_TYPE.get(_owner, ()), (_element, _codes))
_NESTED_BINDINGS: Final = {
    key[1]: codes for key, codes in REQUIRED_BINDINGS.items() if key[0] == "*"
}
# The element names those paths end in: a path string is built only for these keys.
_BOUND_KEYS: Final = frozenset(path.rpartition(".")[2] for path in _NESTED_BINDINGS)


def _fail(resource: dict[str, Any], path: str, reason: str) -> NormalizeError:
    return NormalizeError(f"{resource.get('resourceType', '?')}.{path}", reason, fault="peer")


def _check_identifier(resource: dict[str, Any], ident: Any, path: str) -> None:
    system = ident.get("system") if type(ident) is dict else None
    if system is not None and not _ABSOLUTE_URI.match(system):
        raise _fail(resource, f"{path}.system", "Identifier.system is not an absolute URI")


def _scan(resource: dict[str, Any], node: Any, parent: str, out: list[str] | None) -> None:
    """One walk for our own checks and (when ``out`` is a list) the shape signature.

    Checks: every Identifier.system is an absolute URI; nested codes with required bindings
    (:data:`REQUIRED_BINDINGS` ``"*"`` entries) are in their value set. The signature is a
    flat token list: keys, ``{``/``}``/``[``/``]`` for nesting, and one class per primitive.
    """
    kind = type(node)
    if kind is dict:
        if out is not None:
            out.append("{")
        for key, value in node.items():
            if out is not None:
                out.append(key)
            value_kind = type(value)
            if key == "identifier" or key == "masterIdentifier":  # noqa: PLR1714
                if value_kind is list:
                    for ident in value:
                        _check_identifier(resource, ident, key)
                else:
                    _check_identifier(resource, value, key)
            if value_kind is str:
                codes = _NESTED_BINDINGS.get(f"{parent}.{key}") if key in _BOUND_KEYS else None
                if codes is not None and value not in codes:
                    raise _fail(resource, f"{parent}.{key}", "code not in its required value set")
                if out is not None:
                    out.append(_string_class(value))
            elif value_kind is dict or value_kind is list:
                if not value:  # FHIR JSON has no empty objects or arrays (R4 2.6.2)
                    raise _fail(resource, f"{parent}.{key}", "empty object or array")
                _scan(resource, value, key, out)
            elif value is None:  # nor nulls
                raise _fail(resource, f"{parent}.{key}", "null value")
            elif out is not None:
                out.append(_scalar_class(value))
        if out is not None:
            out.append("}")
    elif kind is list:
        if out is None:
            for item in node:
                _scan(resource, item, parent, None)
            return
        out.append("[")
        seen: set[str] = set()
        for item in node:
            item_kind = type(item)
            if item_kind is dict or item_kind is list:
                sub: list[str] = []
                _scan(resource, item, parent, sub)
                token = "\x1f".join(sub)
            elif item_kind is str:
                token = _string_class(item)
            else:
                token = _scalar_class(item)
            if token not in seen:  # a list's shape: the set of its items' shapes
                seen.add(token)
                out.append(token)
        out.append("]")


def _scalar_class(value: Any) -> str:
    if type(value) is bool:
        return "b"
    if type(value) is int:
        return "i" if value >= 0 else "n"
    return "f"


def own_checks(resource: dict[str, Any]) -> None:
    """The checks the R4B models do not make; raises :class:`NormalizeError` (FHIR path)."""
    _resource_bindings(resource)
    if _fast_signature(resource) is None:
        _scan(resource, resource, "", None)  # raises, naming the path


def _resource_bindings(resource: dict[str, Any]) -> None:
    for element, codes in _BINDINGS_BY_TYPE.get(resource["resourceType"], ()):
        value = resource.get(element)
        if value is None:
            continue
        if not isinstance(value, str):  # a code is a JSON string (FHIR R4 2.1.28.0.1)
            raise _fail(resource, element, "code must be a string")
        if value not in codes:
            raise _fail(resource, element, "code not in its required value set")


def _string_class(value: str) -> str:
    if not value:
        return "E"
    if value[0].isdigit():
        if _INSTANT.match(value):
            return "I"
        if _DATE.match(value):
            return "Y"
        if _DATETIME.match(value):
            return "D"
        if _TIME.match(value):
            return "T"
    if not value.isprintable() or value != value.strip():
        return "S"
    if " " not in value:
        return "U"
    return "C" if _CODE_LIKE.match(value) else "S"


# -- the fast walk ----------------------------------------------------------------------------
#
# ``_scan`` above is the reference: it names the first failing path. Every resource is walked,
# so the walk is the hot path of shape mode (issue 4). ``_fast_signature`` makes the same
# checks in fewer Python operations and signals only *that* one failed (``_Failed``); the
# caller then runs ``_scan`` for the error. Its signature carries the same information as
# ``shape``'s in another spelling: an object's member names are one token, looked up once per
# distinct set of names (with whether it holds identifiers), followed by one token per value;
# the string classes are inlined, the four date/time patterns combined into one.


class _Failed(Exception):
    """A check failed somewhere in the fast walk (which one: ask :func:`_scan`)."""


# The four date/time classes in _string_class's order: alternation tries them in turn, each
# anchored as the separate patterns are (``^...$``), and ``lastgroup`` names the one that matched.
_DIGITAL_CLASS: Final = re.compile(
    r"^(?:(?P<I>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?P<Y>\d{4}(?:-\d{2}(?:-\d{2})?)?)"
    r"|(?P<D>\d{4}(?:-\d{2}(?:-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))?)?)?)"
    r"|(?P<T>\d{2}:\d{2}:\d{2}(?:\.\d+)?))$"
).match
_IDENTIFIER_KEYS: Final = ("identifier", "masterIdentifier")
# parent element -> {child element: allowed codes}, from the "*" entries of REQUIRED_BINDINGS.
_CHILD_BINDINGS: Final[dict[str, dict[str, frozenset[str]]]] = {}
for _path, _codes in _NESTED_BINDINGS.items():
    _parent, _, _child = _path.rpartition(".")
    _CHILD_BINDINGS.setdefault(_parent, {})[_child] = _codes
# member names of an object -> (its signature token, the identifier members it has). Element
# names only (never values); bounded like the shape set.
_PLANS: Final[dict[tuple[str, ...], tuple[str, tuple[str, ...]]]] = {}


def _plan(keys: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    # "{" then the names: a value token is one class letter, "{..." or "[", so the signature
    # reads back unambiguously (the names say how many value tokens follow).
    plan = ("{" + "\x1e".join(keys), tuple(k for k in _IDENTIFIER_KEYS if k in keys))
    if len(_PLANS) < _MAX_SHAPES:
        _PLANS[keys] = plan
    return plan


def _fast_class(value: str) -> str:
    """:func:`_string_class`, with the date/time patterns combined."""
    if not value:
        return "E"
    if value[0].isdigit():
        found = _DIGITAL_CLASS(value)
        if found is not None:
            return found.lastgroup  # type: ignore[return-value]  # one named group matched
    if not value.isprintable() or value != value.strip():
        return "S"
    if " " not in value:
        return "U"
    # Printable and stripped: its only whitespace is U+0020, so _CODE_LIKE is "no double space".
    return "S" if "  " in value else "C"


def _check_identifiers(node: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        idents = node[key]
        for ident in idents if type(idents) is list else (idents,):
            system = ident.get("system") if type(ident) is dict else None
            if system is not None and not _ABSOLUTE_URI.match(system):
                raise _Failed


def _fast_dict(node: dict[str, Any], parent: str, out: list[str]) -> None:
    keys = tuple(node)
    plan = _PLANS.get(keys) or _plan(keys)
    append = out.append
    append(plan[0])
    if plan[1]:
        _check_identifiers(node, plan[1])
    bindings = _CHILD_BINDINGS.get(parent)
    if bindings is not None:
        for key, codes in bindings.items():
            value = node.get(key)
            if type(value) is str and value not in codes:
                raise _Failed
    for key, value in node.items():
        kind = type(value)
        if kind is str:
            # _fast_class inlined: this runs for every string of every resource.
            if not value:
                append("E")
            elif value[0].isdigit() and (found := _DIGITAL_CLASS(value)) is not None:
                append(found.lastgroup)  # type: ignore[arg-type]
            elif not value.isprintable() or value != value.strip():
                append("S")
            elif " " not in value:
                append("U")
            else:
                append("S" if "  " in value else "C")
        elif kind is dict:
            if not value:
                raise _Failed
            _fast_dict(value, key, out)
        elif kind is list:
            if not value:
                raise _Failed
            _fast_list(value, key, out)
        elif value is None:
            raise _Failed
        else:
            append(_scalar_class(value))


def _fast_list(node: list[Any], parent: str, out: list[str]) -> None:
    # As _scan: a list's shape is the set of its items' shapes (first-seen order); items are
    # not checked for emptiness or null (their elements are, where they are object members).
    tokens: dict[str, None] = {}
    for item in node:
        kind = type(item)
        if kind is dict:
            sub: list[str] = []
            _fast_dict(item, parent, sub)
            tokens["\x1f".join(sub)] = None
        elif kind is str:
            tokens[_fast_class(item)] = None
        elif kind is list:
            sub = []
            _fast_list(item, parent, sub)
            tokens["\x1f".join(sub)] = None
        else:
            tokens[_scalar_class(item)] = None
    out.append("[")
    out.extend(tokens)
    out.append("]")


def _fast_signature(resource: dict[str, Any]) -> str | None:
    """The shape signature (fast spelling), or ``None`` when one of our checks fails.

    Does not check the resource-level bindings (:func:`_resource_bindings`)."""
    out: list[str] = []
    try:
        _fast_dict(resource, "", out)
    except (_Failed, TypeError, AttributeError):
        # TypeError/AttributeError: a non-JSON value (not something we emit); the reference
        # walk decides what that is.
        return None
    return "\x1f".join(out)


def shape(resource: dict[str, Any]) -> str:
    """The shape signature of a resource (see the module docstring); runs our checks too."""
    _resource_bindings(resource)
    out: list[str] = []
    _scan(resource, resource, "", out)
    return "\x1f".join(out)


@cache
def _model(resource_type: str) -> Callable[[dict[str, Any]], Any]:
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    model = getattr(module, resource_type)
    validate: Callable[[dict[str, Any]], Any] = model.model_validate
    return validate


class Validator:
    """Validates resources (``mode`` = ``full``, ``shape`` or ``off``, see the module doc).

    One per worker process: it remembers the shapes already proven valid.
    """

    def __init__(self, mode: str = "shape") -> None:
        if mode not in ("full", "shape", "off"):
            raise ValueError(f"unknown validation mode {mode!r}")
        self.mode = mode
        self._valid_shapes: set[str] = set()
        self.model_validations = 0

    def __repr__(self) -> str:
        return f"<Validator mode={self.mode} shapes={len(self._valid_shapes)}>"

    def validate(self, resource: dict[str, Any]) -> None:
        """Raise :class:`NormalizeError` naming the first FHIR path that fails."""
        if self.mode != "shape":
            own_checks(resource)
            if self.mode == "off":
                return
        signature = None
        if self.mode == "shape":
            # Our own checks run in the same walk; when one fails, the reference walk
            # (shape) runs to raise the error naming the path.
            _resource_bindings(resource)
            signature = _fast_signature(resource)
            if signature is None:
                # Raises the error naming the path; should it not, the models decide (and
                # the shape is not remembered).
                shape(resource)
            elif signature in self._valid_shapes:
                return
        self._model_validate(resource)
        if signature is not None and len(self._valid_shapes) < _MAX_SHAPES:
            self._valid_shapes.add(signature)

    def _model_validate(self, resource: dict[str, Any]) -> None:
        resource_type = resource["resourceType"]
        try:
            _model(resource_type)(resource)
        except ValidationError as exc:
            error = exc.errors()[0]
            location = ".".join(str(p) for p in error.get("loc", ()))
            # The pydantic message can quote the offending value: name the path and the
            # error type only (no PHI in errors).
            raise NormalizeError(
                f"{resource_type}.{location}", f"invalid FHIR R4 ({error.get('type', 'error')})"
            ) from None
        except (ImportError, AttributeError):
            raise NormalizeError(
                resource_type, "no R4B model for this resource type", fault="internal"
            ) from None
        self.model_validations += 1
