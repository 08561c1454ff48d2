"""Search parameters: which exist per resource type, how their values parse, how they match.

FHIR R4 3.1.1 (search). Supported: ``_id``, ``identifier`` (token ``SYSTEM|VALUE``: the store
finds identifiers by blind index, which needs the system), ``patient``/``subject`` (reference to
a Patient), ``_lastUpdated`` and ``date`` (prefixes ``eq ne gt lt ge le``), ``code``,
``category``, ``status`` (tokens: ``code``, ``system|code``, ``|code``, ``system|``; a comma is
OR, a repeated parameter is AND), plus ``_count``, ``_sort=_lastUpdated`` and the paging
cursor. Anything else is refused with 400 rather than ignored: a silently dropped filter would
return more records than asked for (R4 3.1.1.4 allows either; there is no lenient mode, so
``Prefer: handling=lenient`` changes nothing).

AuditEvent takes ``patient`` only (and the result parameters; ``_sort=date``): the patient's
accounting of disclosures (:mod:`edge.fhirapi.accounting`).

Costs (docs/fhir.md): ``identifier``, ``patient`` and ``_id`` are index lookups; ``code``,
``date``, ``category`` and ``status`` match on decrypted records, so they filter the records
those lookups (or a scan of the type in ``_lastUpdated`` order) return.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from edge.fhirapi.outcome import FHIRAPIError

__all__ = ["SEARCH_PARAMS", "WITHOUT_COMMON", "DateRange", "ParsedSearch", "Token", "parse_search"]

Kind = Literal["token", "date", "reference"]


@dataclass(frozen=True, slots=True)
class ParamDef:
    name: str
    kind: Kind
    elements: tuple[str, ...]  # top-level elements (choice types by their stem: effective)
    doc: str


def _p(name: str, kind: Kind, *elements: str, doc: str = "") -> ParamDef:
    return ParamDef(name, kind, elements, doc)


_STATUS = _p("status", "token", "status", doc="status code (decrypted filter)")
_CODE = _p("code", "token", "code", doc="code (decrypted filter)")
_CATEGORY = _p("category", "token", "category", doc="category (decrypted filter)")
_SUBJECT = (_p("patient", "reference", "subject", doc="the Patient (index lookup)"),
            _p("subject", "reference", "subject", doc="the Patient (index lookup)"))

# Per type, beyond _id, identifier and _lastUpdated which every type has (R4 search
# parameter registry; only the parameters this server implements).
SEARCH_PARAMS: Final[dict[str, tuple[ParamDef, ...]]] = {
    "AllergyIntolerance": (_p("patient", "reference", "patient"), _CODE, _CATEGORY,
                           _p("date", "date", "recordedDate")),
    "Appointment": (_STATUS, _p("date", "date", "start")),
    "ChargeItem": (*_SUBJECT, _CODE, _p("occurrence", "date", "occurrence")),
    "Condition": (*_SUBJECT, _CODE, _CATEGORY),
    "Coverage": (_p("patient", "reference", "beneficiary"), _STATUS),
    "Device": (_p("patient", "reference", "patient"), _STATUS, _p("type", "token", "type")),
    "DiagnosticReport": (*_SUBJECT, _CODE, _CATEGORY, _STATUS, _p("date", "date", "effective")),
    "DocumentReference": (*_SUBJECT, _CATEGORY, _STATUS, _p("date", "date", "date")),
    "Encounter": (*_SUBJECT, _STATUS, _p("date", "date", "period")),
    "Immunization": (_p("patient", "reference", "patient"), _STATUS,
                     _p("date", "date", "occurrence")),
    "Location": (_STATUS,),
    "MedicationRequest": (*_SUBJECT, _STATUS, _CATEGORY,
                          _p("code", "token", "medicationCodeableConcept")),
    "Observation": (*_SUBJECT, _CODE, _CATEGORY, _STATUS, _p("date", "date", "effective")),
    "Organization": (),
    "Patient": (),
    "Practitioner": (),
    "PractitionerRole": (),
    "Procedure": (*_SUBJECT, _CODE, _CATEGORY, _STATUS, _p("date", "date", "performed")),
    "RelatedPerson": (_p("patient", "reference", "patient"),),
    "ServiceRequest": (*_SUBJECT, _CODE, _CATEGORY, _STATUS),
    "Specimen": (_p("patient", "reference", "subject"), _p("subject", "reference", "subject"),
                 _STATUS),
    # The patient's accounting of disclosures (issue 8), served from the audit trail
    # (edge.peer.audit), not from the store's search. R4 AuditEvent ``patient`` is
    # ``agent.who.where(resolve() is Patient) | entity.what.where(resolve() is Patient)``;
    # every event naming the patient is sealed under the patient's key, so the lookup is
    # by that key (the blind index), as for the other types' ``patient``.
    "AuditEvent": (_p("patient", "reference", "agent", "entity",
                      doc="the Patient, required (index lookup); reading is audited"),),
}
COMMON: Final = ("_id", "identifier", "_lastUpdated")
# Types that take none of COMMON: the accounting is one patient's trail, nothing else.
WITHOUT_COMMON: Final = frozenset({"AuditEvent"})
# The one order each type's results come in (``_sort`` may name it, ascending): the
# accounting is in ``recorded`` order (the ``date`` parameter of AuditEvent), the rest in
# ``meta.lastUpdated`` order.
SORT_ORDER: Final = {"AuditEvent": "date"}
RESULT_PARAMS: Final = ("_count", "_sort", "_cursor", "_format", "_pretty")
_PREFIXES: Final = ("eq", "ne", "gt", "lt", "ge", "le")
_DATE: Final = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?")
_MIN: Final = datetime(1, 1, 1, tzinfo=UTC)
_MAX: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


# -- values ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Token:
    """One token alternative: ``system`` None = any system, "" = no system; ``code`` None =
    any code in the system."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class DateRange:
    """[start, end) in UTC: the range a FHIR date/dateTime/instant of some precision covers
    (R4 3.1.1.5.8: ``2024-05`` is the whole month)."""

    start: datetime
    end: datetime


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = [""]
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            parts[-1] += ch + next(chars, "")
        elif ch == sep:
            parts.append("")
        else:
            parts[-1] += ch
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_token(value: str, name: str) -> tuple[Token, ...]:
    alternatives = []
    for item in _split_unescaped(value, ","):
        pieces = _split_unescaped(item, "|")
        if len(pieces) == 1:
            alternatives.append(Token(None, _unescape(pieces[0]) or None))
        elif len(pieces) == 2:
            alternatives.append(Token(_unescape(pieces[0]), _unescape(pieces[1]) or None))
        else:
            raise FHIRAPIError(400, name, "a token is [system|]code")
        if alternatives[-1] == Token(None, None):
            raise FHIRAPIError(400, name, "empty token")
    return tuple(alternatives)


def date_range(text: str) -> DateRange | None:
    """The range of a FHIR date, dateTime or instant; None when it is not one. A dateTime
    without an offset is taken as UTC (R4 says: the server's zone; documented)."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        tz = UTC
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            tz = UTC if zone[1:] == "00:00" else _offset(sign, zone[1:])
        if month is None:
            start = datetime(int(year), 1, 1, tzinfo=UTC)
            return DateRange(start, start.replace(year=start.year + 1))
        if day is None:
            start = datetime(int(year), int(month), 1, tzinfo=UTC)
            end = (start.replace(year=start.year + 1, month=1) if start.month == 12
                   else start.replace(month=start.month + 1))
            return DateRange(start, end)
        if hour is None:
            start = datetime(int(year), int(month), int(day), tzinfo=UTC)
            return DateRange(start, start + timedelta(days=1))
        start = datetime(int(year), int(month), int(day), int(hour), int(minute),
                         int(second or 0), tzinfo=tz).astimezone(UTC)
        if second is None:
            return DateRange(start, start + timedelta(minutes=1))
        if not fraction:
            return DateRange(start, start + timedelta(seconds=1))
        digits = fraction[1:7]
        start = start + timedelta(microseconds=int(digits.ljust(6, "0")))
        return DateRange(start, start + timedelta(microseconds=10 ** (6 - len(digits))))
    except ValueError:
        return None


def _offset(sign: int, text: str) -> Any:
    from datetime import timezone

    hours, minutes = (int(x) for x in text.split(":"))
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


@dataclass(frozen=True, slots=True)
class DateCondition:
    prefix: str
    range: DateRange

    def matches(self, target: DateRange) -> bool:
        """R4 3.1.1.4 (prefixes), with ranges on both sides."""
        s, t = self.range, target
        eq = s.start <= t.start and t.end <= s.end
        if self.prefix == "eq":
            return eq
        if self.prefix == "ne":
            return not eq
        if self.prefix == "gt":
            return t.end > s.end
        if self.prefix == "lt":
            return t.start < s.start
        if self.prefix == "ge":
            return eq or t.end > s.end
        return eq or t.start < s.start  # le


def parse_date(value: str, name: str) -> DateCondition:
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    rest = value[2:] if value[:2] in _PREFIXES else value
    if value[:2].isalpha() and value[:2] not in _PREFIXES:
        raise FHIRAPIError(400, name, "unsupported prefix (eq ne gt lt ge le)")
    found = date_range(rest)
    if found is None:
        raise FHIRAPIError(400, name, "not a FHIR date, dateTime or instant")
    return DateCondition(prefix, found)


# -- a parsed request -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Cursor:
    last_updated: str
    row: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.last_updated}|{self.row}".encode()).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            updated, _, row = base64.urlsafe_b64decode(text.encode()).decode().partition("|")
            return cls(updated, int(row))
        except (ValueError, UnicodeDecodeError):
            raise FHIRAPIError(400, "_cursor", "not a cursor this server made") from None


@dataclass(frozen=True, slots=True)
class ParsedSearch:
    """A search, ready to run: the lookup (``ids``, ``identifier`` or ``patient``, else a
    type scan) and the filters applied to each candidate."""

    type: str
    count: int
    ids: tuple[str, ...] | None = None
    identifier: str | None = None  # SYSTEM|VALUE, escaped as sent
    patient: str | None = None  # Patient id
    patient_elements: tuple[str, ...] = ()
    last_updated: tuple[DateCondition, ...] = ()
    dates: tuple[tuple[tuple[str, ...], DateCondition], ...] = ()
    tokens: tuple[tuple[str, tuple[Token, ...]], ...] = ()
    cursor: Cursor | None = None
    params: tuple[tuple[str, str], ...] = field(default=())  # for the self/next links

    def matches(self, resource: Mapping[str, Any], last_updated: str,
                patient_key: str | None = None) -> bool:
        """Every filter except the lookup itself holds for ``resource``."""
        if self.last_updated:
            stamp = date_range(last_updated)
            if stamp is None or not all(c.matches(stamp) for c in self.last_updated):
                return False
        for elements, condition in self.dates:
            ranges = [r for e in elements for r in _date_values(resource, e)]
            if not any(condition.matches(r) for r in ranges):
                return False
        for element, alternatives in self.tokens:
            codes = list(_token_values(resource.get(element)))
            if not any(_token_match(t, codes) for t in alternatives):
                return False
        if self.patient is not None:
            wanted = f"Patient/{self.patient}"
            for element in self.patient_elements:
                ref = resource.get(element)
                if isinstance(ref, Mapping) and (
                        ref.get("reference") == wanted
                        or (patient_key is not None and _ident_token(ref) == patient_key)):
                    return True
            return False
        return True


def parse_search(rtype: str, query: Sequence[tuple[str, str]], *, default_count: int,
                 max_count: int) -> ParsedSearch:
    """Parse ``query`` for a search of ``rtype``; raises 400 naming the parameter at fault."""
    defs = {d.name: d for d in SEARCH_PARAMS.get(rtype, ())}
    common = () if rtype in WITHOUT_COMMON else COMMON
    order = SORT_ORDER.get(rtype, "_lastUpdated")
    count = default_count
    out: dict[str, Any] = {"ids": None, "identifier": None, "patient": None}
    last_updated: list[DateCondition] = []
    dates: list[tuple[tuple[str, ...], DateCondition]] = []
    tokens: list[tuple[str, tuple[Token, ...]]] = []
    patient_elements: tuple[str, ...] = ()
    cursor = None
    kept: list[tuple[str, str]] = []
    for name, value in query:
        base, _, modifier = name.partition(":")
        if modifier:
            raise FHIRAPIError(400, name, "search modifiers are not supported")
        if base != "_cursor":
            kept.append((name, value))
        if base == "_count":
            if not value.isdigit():
                raise FHIRAPIError(400, name, "not a non-negative integer")
            count = min(int(value), max_count)
        elif base == "_sort":
            if value != order:
                raise FHIRAPIError(400, name, f"only {order} (ascending) is supported")
        elif base == "_cursor":
            cursor = Cursor.decode(value)
        elif base in ("_format", "_pretty"):
            if base == "_format" and value not in ("json", "application/fhir+json",
                                                   "application/json"):
                raise FHIRAPIError(406, name, "only JSON is served")
        elif base in COMMON and base not in common:
            raise FHIRAPIError(400, name, f"not a search parameter this server supports for "
                               f"{rtype} (see /metadata)")
        elif base == "_id":
            out["ids"] = tuple(_unescape(v) for v in _split_unescaped(value, ","))
        elif base == "identifier":
            if out["identifier"] is not None or "," in value.replace("\\,", ""):
                raise FHIRAPIError(400, name, "one identifier per search")
            if "|" not in value.replace("\\|", ""):
                raise FHIRAPIError(400, name, "an identifier search needs SYSTEM|VALUE (the "
                                   "system is part of the index)")
            out["identifier"] = value
        elif base == "_lastUpdated":
            last_updated.append(parse_date(value, name))
        elif base in defs:
            definition = defs[base]
            if definition.kind == "reference":
                if out["patient"] is not None:
                    raise FHIRAPIError(400, name, "one patient per search")
                out["patient"] = _patient_id(value, name)
                patient_elements = definition.elements
            elif definition.kind == "date":
                dates.append((definition.elements, parse_date(value, name)))
            else:
                tokens.append((definition.elements[0], parse_token(value, name)))
        else:
            raise FHIRAPIError(400, name, f"not a search parameter this server supports for "
                               f"{rtype} (see /metadata)")
    return ParsedSearch(rtype, count, out["ids"], out["identifier"], out["patient"],
                        patient_elements, tuple(last_updated), tuple(dates), tuple(tokens),
                        cursor, tuple(kept))


def _patient_id(value: str, name: str) -> str:
    ident = value.rsplit("Patient/", 1)[1] if "Patient/" in value else value
    if "/" in ident or not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", ident):
        raise FHIRAPIError(400, name, "expected Patient/ID or ID")
    return ident


# -- matching on decrypted records --------------------------------------------------------

def _date_values(resource: Mapping[str, Any], stem: str) -> Iterable[DateRange]:
    for key, value in resource.items():
        if key != stem and not (key.startswith(stem) and key[len(stem):] in (
                "DateTime", "Period", "Instant", "Date")):
            continue
        if isinstance(value, str):
            found = date_range(value)
            if found is not None:
                yield found
        elif isinstance(value, Mapping):  # Period: open ends reach to the end of time
            start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
            end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
            yield DateRange(start.start if start else _MIN, end.end if end else _MAX)


def _token_values(value: Any) -> Iterable[tuple[str | None, str]]:
    """(system, code) pairs of a code, Coding, CodeableConcept or Identifier (or a list)."""
    if isinstance(value, list):
        for item in value:
            yield from _token_values(item)
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, Mapping):
        if isinstance(value.get("coding"), list):
            yield from _token_values(value["coding"])
        code = value.get("code", value.get("value"))
        if isinstance(code, str):
            system = value.get("system")
            yield (system if isinstance(system, str) else ""), code


def _token_match(token: Token, codes: list[tuple[str | None, str]]) -> bool:
    for system, code in codes:
        if token.code is not None and code != token.code:
            continue
        # A plain code element (status) has an implicit system: any system given matches.
        if token.system is None or system is None or system == token.system:
            return True
    return False


def _ident_token(ref: Mapping[str, Any]) -> str | None:
    from edge.normalize.fhir_json import token

    ident = ref.get("identifier")
    if isinstance(ident, Mapping) and ident.get("system") and ident.get("value"):
        return token(str(ident["system"]), str(ident["value"]))
    return None
