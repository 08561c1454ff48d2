"""ASTM E1394 (CLSI LIS2-A2) records: from a message's bytes to a typed structure. Pure.

A message is a sequence of records separated by CR (E1394 section 5), each record a sequence
of fields separated by the *field delimiter*. The H record declares the delimiters in its
first characters (section 7.1.1)::

    H|\\^&|...        field '|', repeat '\\', component '^', escape '&'

Records kept here (section numbers are E1394-97 / LIS2-A2):

- H  message header (7)          - P  patient information (8)
- O  test order (9)              - R  result (10)
- C  comment (11)                - Q  request information (12)
- L  message terminator (13)     - anything else (M, S) is kept as :class:`OtherRecord`

Hierarchy (section 5.1): H, then P; O under P; R under O; C under whichever record precedes
it; Q records; L last. Instruments are lenient about it, so are we: an O without a P gets a
patient group whose ``patient`` is None, an R without an O an order group whose ``order`` is
None. Nothing here maps to FHIR; ``edge.normalize`` does, with a :mod:`edge.astm.profile`.

Field values are kept as sent except that escape sequences (section 6.6: ``&F&`` ``&S&``
``&R&`` ``&E&`` and ``&Xhh..&``) are decoded where a field is split into its parts; helpers
split repeats and components. Errors (:class:`~edge.astm.errors.RecordError`) name record
positions and field paths, never values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from edge.astm.errors import RecordError

__all__ = [
    "Comment",
    "Delimiters",
    "Header",
    "Message",
    "Order",
    "OrderGroup",
    "OtherRecord",
    "Patient",
    "PatientGroup",
    "Query",
    "Record",
    "Result",
    "ResultGroup",
    "Terminator",
    "UniversalTestId",
    "parse_message",
    "parse_timestamp",
    "split_records",
]


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The four delimiters of E1394 section 6.3, declared by the H record."""

    field: str = "|"
    repeat: str = "\\"
    component: str = "^"
    escape: str = "&"

    def repeats(self, value: str) -> list[str]:
        """A field's repetitions (escapes still encoded)."""
        return value.split(self.repeat) if value else []

    def components(self, value: str) -> list[str]:
        """One repetition's components, unescaped."""
        return [self.unescape(part) for part in value.split(self.component)]

    def unescape(self, value: str) -> str:
        """Decode ``&F& &S& &R& &E& &Xhh..&`` (section 6.6); other sequences stay as sent."""
        esc = self.escape
        if esc not in value:
            return value
        pattern = re.compile(re.escape(esc) + r"([FSRE]|X[0-9A-Fa-f]+)" + re.escape(esc))
        plain = {"F": self.field, "S": self.component, "R": self.repeat, "E": esc}

        def one(match: re.Match[str]) -> str:
            code = match.group(1)
            if code in plain:
                return plain[code]
            digits = code[1:]
            if len(digits) % 2:
                return match.group(0)
            return bytes.fromhex(digits).decode("latin-1")

        return pattern.sub(one, value)


@dataclass(frozen=True, slots=True)
class UniversalTestId:
    """E1394 6.6.1: ``universal id ^ name ^ type ^ manufacturer's local code ^ ...``.

    Most instruments leave the first three empty and put their own code in component 4
    (``^^^GLU``); a device profile says which component to read."""

    components: tuple[str, ...]

    def component(self, number: int) -> str:
        """Component ``number`` (1-based), or ``""``."""
        return self.components[number - 1] if 0 < number <= len(self.components) else ""

    @property
    def code(self) -> str:
        """The manufacturer's local code (component 4), else the first non-empty component."""
        return self.component(4) or next((c for c in self.components if c), "")

    def __repr__(self) -> str:  # test codes are not PHI
        return f"UniversalTestId({self.components!r})"


@dataclass(frozen=True, slots=True)
class Record:
    """Common to every record: its type, its position (1-based) and its raw fields (field 1
    is the type). ``repr`` shows no values."""

    type: str
    position: int
    fields: tuple[str, ...] = field(repr=False)
    delimiters: Delimiters = field(repr=False)

    def raw(self, number: int) -> str:
        """Field ``number`` (E1394 numbering: 1 is the record type) as sent, or ``""``."""
        return self.fields[number - 1] if 0 < number <= len(self.fields) else ""

    def text(self, number: int) -> str:
        """Field ``number`` unescaped (for fields with no repeats or components)."""
        return self.delimiters.unescape(self.raw(number))

    def components(self, number: int) -> tuple[str, ...]:
        """The first repetition of field ``number``, split into unescaped components."""
        repeats = self.delimiters.repeats(self.raw(number))
        return tuple(self.delimiters.components(repeats[0])) if repeats else ()

    def repeats(self, number: int) -> tuple[tuple[str, ...], ...]:
        """Every repetition of field ``number``, each split into unescaped components."""
        return tuple(tuple(self.delimiters.components(r))
                     for r in self.delimiters.repeats(self.raw(number)))

    def sequence(self) -> int:
        """Field 2, the sequence number (0 when empty, as for H and some instruments' L)."""
        value = self.raw(2).strip()
        if not value:
            return 0
        if not (value.isascii() and value.isdigit()):  # isdigit() alone admits superscripts
            raise RecordError(self.position, f"{self.type}-2", "sequence number is not a number")
        return int(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(position={self.position}, fields={len(self.fields)})"


@dataclass(frozen=True, slots=True, repr=False)
class Header(Record):
    """H (section 7)."""

    @property
    def message_control_id(self) -> str:  # H-3
        return self.text(3)

    # H-4 is the access password: deliberately not exposed.

    @property
    def sender(self) -> tuple[str, ...]:  # H-5: name ^ software version ^ serial ^ ...
        return self.components(5)

    @property
    def receiver(self) -> tuple[str, ...]:  # H-10
        return self.components(10)

    @property
    def processing_id(self) -> str:  # H-12: P production, T training, D debugging, Q QC
        return self.text(12)

    @property
    def version(self) -> str:  # H-13
        return self.text(13)

    @property
    def timestamp(self) -> str:  # H-14, YYYYMMDDHHMMSS
        return self.text(14)


@dataclass(frozen=True, slots=True, repr=False)
class Patient(Record):
    """P (section 8)."""

    @property
    def practice_patient_id(self) -> str:  # P-3, assigned by the ordering practice
        return self.text(3)

    @property
    def laboratory_patient_id(self) -> str:  # P-4, assigned by the laboratory
        return self.text(4)

    @property
    def patient_id_3(self) -> str:  # P-5, e.g. a national id
        return self.text(5)

    @property
    def name(self) -> tuple[str, ...]:  # P-6: last ^ first ^ middle ^ suffix ^ title
        return self.components(6)

    @property
    def birthdate(self) -> str:  # P-8
        return self.text(8)

    @property
    def sex(self) -> str:  # P-9: M, F, U
        return self.text(9)


@dataclass(frozen=True, slots=True, repr=False)
class Order(Record):
    """O (section 9)."""

    @property
    def specimen_id(self) -> str:  # O-3, the sample id the laboratory assigned (first comp.)
        parts = self.components(3)
        return parts[0] if parts else ""

    @property
    def instrument_specimen_id(self) -> str:  # O-4
        parts = self.components(4)
        return parts[0] if parts else ""

    @property
    def test_ids(self) -> tuple[UniversalTestId, ...]:  # O-5, repeatable
        return tuple(UniversalTestId(r) for r in self.repeats(5))

    @property
    def priority(self) -> str:  # O-6: S stat, A asap, R routine, C callback, P preop
        return self.text(6)

    @property
    def requested_at(self) -> str:  # O-7
        return self.text(7)

    @property
    def collected_at(self) -> str:  # O-8, specimen collection date and time
        return self.text(8)

    @property
    def action_code(self) -> str:  # O-12: C cancel, A add, N new, P pending, L reserved, X, Q
        return self.text(12)

    @property
    def specimen_descriptor(self) -> tuple[str, ...]:  # O-16: specimen type ^ source
        return self.components(16)

    @property
    def report_type(self) -> str:  # O-26: O order, C correction, P preliminary, F final, ...
        return self.text(26)


@dataclass(frozen=True, slots=True, repr=False)
class Result(Record):
    """R (section 10)."""

    @property
    def test_id(self) -> UniversalTestId:
        return UniversalTestId(self.components(3))

    @property
    def value(self) -> str:  # R-4 (first component; quantitative or qualitative)
        parts = self.components(4)
        return parts[0] if parts else ""

    @property
    def units(self) -> str:
        return self.text(5)

    @property
    def reference_range(self) -> str:  # R-6, e.g. "70 to 105" or "70-105"
        return self.text(6)

    @property
    def abnormal_flags(self) -> str:  # L, H, LL, HH, <, >, N, A, U, D, B, W
        return self.text(7)

    @property
    def abnormality_nature(self) -> str:
        return self.text(8)

    @property
    def status(self) -> str:  # C correction, P preliminary, F final, X, I, S, M, R, N, Q, V
        return self.text(9)

    @property
    def operator(self) -> str:
        return self.text(11)

    @property
    def started_at(self) -> str:
        return self.text(12)

    @property
    def completed_at(self) -> str:
        return self.text(13)

    @property
    def instrument(self) -> str:  # R-14, instrument identification
        return self.text(14)


@dataclass(frozen=True, slots=True, repr=False)
class Comment(Record):
    """C (section 11)."""

    @property
    def source(self) -> str:  # C-3: P practice, L information system, I instrument
        return self.text(3)

    @property
    def text_parts(self) -> tuple[str, ...]:  # C-4: code ^ free text, repeatable
        return self.components(4)

    @property
    def comment_type(self) -> str:  # C-5: G generic, T test name, P positive, N negative, I
        return self.text(5)


@dataclass(frozen=True, slots=True, repr=False)
class Query(Record):
    """Q (section 12)."""

    @property
    def starting_range(self) -> tuple[str, ...]:  # patient id ^ specimen id ^ ...
        return self.components(3)

    @property
    def ending_range(self) -> tuple[str, ...]:
        return self.components(4)

    @property
    def test_ids(self) -> tuple[UniversalTestId, ...]:
        return tuple(UniversalTestId(r) for r in self.repeats(5))

    @property
    def status_code(self) -> str:  # C correction, P preliminary, F final, X, I, S, ...
        return self.text(13)


@dataclass(frozen=True, slots=True, repr=False)
class Terminator(Record):
    """L (section 13)."""

    @property
    def termination_code(self) -> str:  # L-3: N normal, T, R, E, Q, I, F
        return self.text(3)


@dataclass(frozen=True, slots=True, repr=False)
class OtherRecord(Record):
    """A record type this parser does not interpret (M manufacturer, S scientific, ...)."""


_KINDS: dict[str, type[Record]] = {"H": Header, "P": Patient, "O": Order, "R": Result,
                                   "C": Comment, "Q": Query, "L": Terminator}


# -- the hierarchy ---------------------------------------------------------------------------

@dataclass(slots=True)
class ResultGroup:
    result: Result
    comments: list[Comment] = field(default_factory=list)


@dataclass(slots=True)
class OrderGroup:
    order: Order | None
    results: list[ResultGroup] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)


@dataclass(slots=True)
class PatientGroup:
    patient: Patient | None
    orders: list[OrderGroup] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)


@dataclass(slots=True)
class Message:
    """One H..L message. ``records`` is every record in order; the groups give structure."""

    header: Header
    records: list[Record]
    patients: list[PatientGroup] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    header_comments: list[Comment] = field(default_factory=list)
    other: list[OtherRecord] = field(default_factory=list)
    terminator: Terminator | None = None

    @property
    def delimiters(self) -> Delimiters:
        return self.header.delimiters

    def results(self) -> list[tuple[Patient | None, Order | None, Result]]:
        """Every result with its patient and order, in message order."""
        return [(p.patient, o.order, r.result)
                for p in self.patients for o in p.orders for r in o.results]

    def __repr__(self) -> str:
        return (f"Message(records={len(self.records)}, patients={len(self.patients)}, "
                f"results={len(self.results())})")


# -- parsing ---------------------------------------------------------------------------------

def split_records(raw: bytes) -> list[bytes]:
    """The records of a message: separated by CR (CR LF and LF tolerated, as files carry
    them); empty lines dropped."""
    return [r for r in re.split(rb"\r\n|\r|\n", raw) if r.strip()]


def parse_message(raw: bytes, *, codec: str = "latin-1") -> Message:
    """Parse one H..L message. Raises :class:`RecordError` when there is no usable H record
    first, when a record is not decodable with ``codec``, or when a field that gives the
    message its structure (a sequence number) is malformed."""
    lines = split_records(raw)
    if not lines:
        raise RecordError(0, "", "no records")
    texts: list[str] = []
    for index, line in enumerate(lines, start=1):
        try:
            texts.append(line.decode(codec))
        except UnicodeDecodeError as exc:
            raise RecordError(index, "", f"not decodable as {codec} at byte {exc.start}",
                              ) from None
    delimiters = _delimiters(texts[0])
    records = [_record(text, index, delimiters) for index, text in enumerate(texts, start=1)]
    header = records[0]
    assert isinstance(header, Header)
    message = Message(header=header, records=records)
    _build(message, records[1:])
    return message


def _delimiters(first: str) -> Delimiters:
    # E1394 7.1.1: "H", the field delimiter, then repeat, component and escape delimiters.
    if not first.startswith("H"):
        raise RecordError(1, "", "first record is not an H record")
    if len(first) < 5:
        raise RecordError(1, "H-2", "delimiter definition is incomplete")
    field_d, repeat, component, escape = first[1], first[2], first[3], first[4]
    chosen = (field_d, repeat, component, escape)
    if len(set(chosen)) != 4 or any(c.isalnum() or c in "\r\n " for c in chosen):
        raise RecordError(1, "H-2", "delimiters must be four distinct non-alphanumeric characters")
    if len(first) > 5 and first[5] != field_d:
        raise RecordError(1, "H-2", "delimiter definition is not followed by a field delimiter")
    return Delimiters(field_d, repeat, component, escape)


def _record(text: str, position: int, delimiters: Delimiters) -> Record:
    fields = tuple(text.split(delimiters.field))
    kind = fields[0].strip().upper()
    # Some instruments prefix the type with the frame's sequence digit or spaces; the type is
    # the first letter only (section 6.2: record type ids are single letters).
    kind = kind[-1:] if kind else ""
    if not kind.isalpha():
        raise RecordError(position, "", "record type is missing")
    if kind == "H" and position != 1:
        raise RecordError(position, "H", "second H record in one message")
    cls = _KINDS.get(kind, OtherRecord)
    return cls(type=kind, position=position, fields=fields, delimiters=delimiters)


def _build(message: Message, records: list[Record]) -> None:
    patient: PatientGroup | None = None
    order: OrderGroup | None = None
    result: ResultGroup | None = None
    for record in records:
        if message.terminator is not None:
            raise RecordError(record.position, record.type, "record after the L record")
        record.sequence()  # validates field 2 where it is used for structure
        if isinstance(record, Patient):
            patient = PatientGroup(record)
            message.patients.append(patient)
            order = result = None
        elif isinstance(record, Order):
            if patient is None:
                patient = PatientGroup(None)
                message.patients.append(patient)
            order = OrderGroup(record)
            patient.orders.append(order)
            result = None
        elif isinstance(record, Result):
            if order is None:
                if patient is None:
                    patient = PatientGroup(None)
                    message.patients.append(patient)
                order = OrderGroup(None)
                patient.orders.append(order)
            result = ResultGroup(record)
            order.results.append(result)
        elif isinstance(record, Comment):
            # Section 11: a comment belongs to the record just before it.
            if result is not None:
                result.comments.append(record)
            elif order is not None:
                order.comments.append(record)
            elif patient is not None:
                patient.comments.append(record)
            else:
                message.header_comments.append(record)
        elif isinstance(record, Query):
            message.queries.append(record)
            patient = order = result = None
        elif isinstance(record, Terminator):
            message.terminator = record
        elif isinstance(record, OtherRecord):
            message.other.append(record)


_TIMESTAMP = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?$")


def parse_timestamp(value: str, where: str = "") -> datetime | date | None:
    """E1394 6.6.2 ``YYYYMMDD[HHMM[SS]]`` to a naive ``datetime`` (a ``date`` when no time is
    given); None for an empty value. The instrument's local time: the caller applies the
    facility's zone. ``where`` (a field path) goes into the error, the value never does."""
    value = value.strip()
    if not value:
        return None
    match = _TIMESTAMP.match(value)
    if match is None or match.group(3) is None:
        raise RecordError(0, where, "timestamp is not YYYYMMDD[HHMM[SS]]")
    parts = [int(g) if g is not None else None for g in match.groups()]
    year, month, day, hour, minute, second = parts
    assert year is not None and month is not None and day is not None
    try:
        if hour is None:
            return date(year, month, day)
        return datetime(year, month, day, hour, minute or 0, second or 0)
    except ValueError:
        raise RecordError(0, where, "timestamp is not a valid date or time") from None
