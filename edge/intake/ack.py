"""Build the HL7 v2 general acknowledgement (``ACK``) for a received message.

References are to HL7 v2.5 chapter 2 (Control): 2.9 acknowledgement modes, the MSH, MSA and
ERR segment definitions, tables 0008 (acknowledgement code), 0155 (accept/application
acknowledgement conditions), 0357 (message error condition codes) and 0516 (error severity).

The builders are pure: the ACK's own control id and the clock are passed in, and the result is
the ER7 message (segments ended by CR, no MLLP framing) encoded in the received message's codec.

How the ACK answers the message (choices where the standard leaves room are marked *we*):

- MSH-1/MSH-2: the sender's own delimiters, including a fifth (truncation) character.
- MSH-3/4 = their MSH-5/6 and MSH-5/6 = their MSH-3/4 (we answer as the application they
  addressed); MSH-3/4 can be overridden with our configured identity.
- MSH-7: ``now`` (``YYYYMMDDHHMMSS`` plus ``+ZZZZ`` when ``now`` is timezone-aware).
- MSH-9: ``ACK^<their trigger event>^ACK``; just ``ACK`` when they sent no trigger event.
  *We* drop the third component (message structure) for versions before 2.3.1, which do not
  have it.
- MSH-10: our own control id; MSH-11: their processing id; MSH-12: their version.
- MSH-15/16: in enhanced mode *we* send ``NE``/``NE`` so the sender never acknowledges the
  acknowledgement (acknowledgements are not acknowledged, 2.9); blank in original mode.
- MSH-18: their character set(s), echoed as sent, since the ACK is encoded the same way.
- MSA-1: the code; MSA-2: their MSH-10 as sent.
- MSA-3 (text): deprecated as of v2.4 in favour of ERR, withdrawn in v2.7. Old receivers show
  it to operators, so *we* send it for every version before 2.7 (cut to the field's 80
  characters); from 2.7 on the text goes to ERR-8 of the first ERR instead, and is dropped
  when there is no ERR.
- ERR from v2.5: one ERR per error; ERR-2 location (ERL), ERR-3 the table 0357 code as CWE
  (``207^Application internal error^HL70357``), ERR-4 severity (table 0516), ERR-7
  diagnostics, ERR-8 user message; ERR-1 (deprecated) empty.
- ERR before v2.5 (2.1-2.4): a single ERR whose ERR-1 repeats once per error as
  ``<segment>^<sequence>^<field>^<code&text&HL70357>`` (the ELD layout).
- Text values are ER7-escaped with the sender's delimiters (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``,
  ``\\P\\`` for a fifth character) and control characters become ``\\Xhh\\`` (CR, LF, and
  the MLLP block bytes, which would break the segment or the frame). Values taken from their
  header are echoed as sent (they are already ER7), control characters aside. Characters the
  codec cannot represent become ``?``: an ACK must always be sendable.
- Before v2.5 the ERR segment has no place for severity, diagnostics or user message; those
  parts of an :class:`AckError` are not sent there.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Final, Literal

from edge.er7.delimiters import Delimiters
from edge.er7.escape import escape as er7_escape
from edge.er7.header import Header

__all__ = [
    "AckCode",
    "AckError",
    "ErrorCode",
    "ErrorLocation",
    "Severity",
    "ack_code",
    "best_effort_control_id",
    "build_ack",
    "build_unparsed_ack",
    "should_send_accept_ack",
    "should_send_application_ack",
]

DEFAULT_ENCODING_CHARACTERS: Final = "^~\\&"
DEFAULT_VERSION: Final = "2.5"
_MSA3_MAX: Final = 80  # MSA-3 is ST, length 80 (v2.5 MSA segment definition)
_CONTROL_ID_MAX: Final = 199  # MSH-10 is at most 199 characters in any version


class AckCode(StrEnum):
    """HL7 table 0008. ``A*`` codes: original mode, and enhanced-mode application
    acknowledgements; ``C*`` codes: enhanced-mode accept (commit) acknowledgements."""

    AA = "AA"  # application accept
    AE = "AE"  # application error
    AR = "AR"  # application reject
    CA = "CA"  # commit accept
    CE = "CE"  # commit error
    CR = "CR"  # commit reject

    @property
    def is_accept_ack(self) -> bool:
        """Whether this is an enhanced-mode accept acknowledgement code (CA, CE, CR)."""
        return self in (AckCode.CA, AckCode.CE, AckCode.CR)

    @property
    def is_success(self) -> bool:
        return self in (AckCode.AA, AckCode.CA)


class ErrorCode(IntEnum):
    """HL7 table 0357, message error condition codes (sent in ERR-3 / ERR-1.4)."""

    MESSAGE_ACCEPTED = 0
    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        """The table's display text, e.g. ``"Application internal error"``."""
        return _ERROR_TEXT[self]


_ERROR_TEXT: Final[dict[ErrorCode, str]] = {
    ErrorCode.MESSAGE_ACCEPTED: "Message accepted",
    ErrorCode.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE_ERROR: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    ErrorCode.APPLICATION_RECORD_LOCKED: "Application record locked",
    ErrorCode.APPLICATION_INTERNAL_ERROR: "Application internal error",
}


class Severity(StrEnum):
    """HL7 table 0516 (ERR-4, v2.5 and later)."""

    ERROR = "E"
    WARNING = "W"
    INFORMATION = "I"


_PATH: Final = re.compile(
    r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?)?"
)


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    """Where an error is: ERR-2 (ERL) from v2.5, the first three ELD components before.

    ``sequence`` is the segment's occurrence in the message (1 = the first PID)."""

    segment_id: str
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None
    subcomponent: int | None = None

    @classmethod
    def from_path(cls, path: str) -> ErrorLocation | None:
        """Parse a field path such as ``MSH``, ``MSH-9``, ``PID-3.4`` or ``OBX[2]-5`` (the form
        errors name locations in); ``None`` when ``path`` is not one."""
        match = _PATH.fullmatch(path.strip())
        if match is None:
            return None
        segment, sequence, fld, repetition, component, subcomponent = match.groups()

        def num(text: str | None) -> int | None:
            return None if text is None else int(text)

        return cls(
            segment,
            sequence=int(sequence) if sequence else 1,
            field=num(fld),
            repetition=num(repetition),
            component=num(component),
            subcomponent=num(subcomponent),
        )

    def __str__(self) -> str:
        """The field path used in logs, e.g. ``PID-3.4`` (occurrences > 1 as ``OBX[2]``)."""
        path = self.segment_id if self.sequence == 1 else f"{self.segment_id}[{self.sequence}]"
        if self.field is None:
            return path
        path += f"-{self.field}"
        if self.repetition not in (None, 1):
            path += f"[{self.repetition}]"
        for part in (self.component, self.subcomponent):
            if part is None:
                break
            path += f".{part}"
        return path


@dataclass(frozen=True, slots=True)
class AckError:
    """One error reported to the sender. Texts go to the sender only; keep PHI out anyway
    (name field paths, not values)."""

    code: ErrorCode
    severity: Severity = Severity.ERROR
    location: ErrorLocation | None = None
    diagnostic: str = ""  # ERR-7 (v2.5+): for the sender's support staff
    user_message: str = ""  # ERR-8 (v2.5+): for the sender's users


Outcome = Literal["accept", "error", "reject"]


def ack_code(header: Header | None, outcome: Outcome) -> AckCode:
    """The code for an accept-level answer: CA/CE/CR in enhanced mode, AA/AE/AR in original
    mode (2.9.2, 2.9.3) or when there is no header."""
    enhanced = header is not None and header.enhanced_mode
    if outcome == "accept":
        return AckCode.CA if enhanced else AckCode.AA
    if outcome == "error":
        return AckCode.CE if enhanced else AckCode.AE
    return AckCode.CR if enhanced else AckCode.AR


def should_send_accept_ack(header: Header, code: AckCode) -> bool:
    """Whether the accept acknowledgement ``code`` is to be sent for ``header`` (2.9.3).

    Original mode (MSH-15 and MSH-16 both empty): always; the ACK then is the one
    acknowledgement the sender waits for. Enhanced mode follows MSH-15 per table 0155:
    ``AL`` always, ``NE`` never, ``ER`` only for a non-success code, ``SU`` only for a
    success code. *We* treat an empty MSH-15 next to a valued MSH-16, and values outside the
    table, as ``AL``: an acknowledgement the sender did not ask for is harmless, one it waits
    for and never gets stalls the interface.
    """
    if not header.enhanced_mode:
        return True
    return _condition_allows(header.accept_ack_type, code.is_success)


def should_send_application_ack(header: Header, code: AckCode) -> bool:
    """The same decision for an application acknowledgement, from MSH-16 (table 0155)."""
    if not header.enhanced_mode:
        return True
    return _condition_allows(header.application_ack_type, code.is_success)


def _condition_allows(condition: str, success: bool) -> bool:
    value = condition.strip().upper()
    if value == "NE":
        return False
    if value == "ER":
        return not success
    if value == "SU":
        return success
    return True


def build_ack(
    header: Header,
    code: AckCode,
    *,
    control_id: str,
    now: datetime,
    errors: Sequence[AckError] = (),
    text: str = "",
    sending_application: str | tuple[str, ...] | None = None,
    sending_facility: str | tuple[str, ...] | None = None,
) -> bytes:
    """The ACK answering ``header``, as ER7 bytes in ``header.codec`` (see module docstring).

    ``control_id`` is this ACK's own MSH-10. ``sending_application`` / ``sending_facility``
    replace the echoed MSH-3 / MSH-4 (a plain string is one component; a tuple gives the HD
    components, e.g. ``("HIE-EDGE", "2.16.840.1.113883.3.1", "ISO")``).
    """
    delims = _Delimiters.of(header)
    version = _version_key(header.version_id)
    esc, echo = delims.escape, delims.echo

    msh3 = echo(header.receiving_application)
    msh4 = echo(header.receiving_facility)
    if sending_application is not None:
        msh3 = delims.hd(sending_application)
    if sending_facility is not None:
        msh4 = delims.hd(sending_facility)

    if not header.trigger_event:
        message_type = "ACK"
    elif version >= (2, 3, 1):
        message_type = delims.component.join(("ACK", echo(header.trigger_event), "ACK"))
    else:
        message_type = delims.component.join(("ACK", echo(header.trigger_event)))
    ack_mode = "NE" if header.enhanced_mode else ""

    msh = [
        "MSH",
        delims.encoding_characters,  # MSH-2 (MSH-1 is the separator joining these)
        msh3,  # MSH-3 sending application = their receiving application
        msh4,  # MSH-4
        echo(header.sending_application),  # MSH-5 = their MSH-3
        echo(header.sending_facility),  # MSH-6 = their MSH-4
        _format_dtm(now),  # MSH-7
        "",  # MSH-8 security
        message_type,  # MSH-9
        esc(control_id),  # MSH-10
        echo(header.processing_id),  # MSH-11
        echo(header.version_id),  # MSH-12
        "",  # MSH-13 sequence number
        "",  # MSH-14 continuation pointer
        ack_mode,  # MSH-15
        ack_mode,  # MSH-16
        "",  # MSH-17 country code
        echo(delims.repetition.join(header.character_sets)),  # MSH-18
    ]

    errors = list(errors)
    msa = ["MSA", code.value, echo(header.control_id)]
    if text and version < (2, 7):
        msa.append(esc(text[:_MSA3_MAX]))
    elif text and errors and not errors[0].user_message:
        errors[0] = replace(errors[0], user_message=text)

    segments = [msh, msa]
    if errors:
        if version >= (2, 5):
            segments.extend(_err_v25(error, delims) for error in errors)
        else:
            segments.append(_err_v21(errors, delims))
    sep = delims.field
    message = "".join(sep.join(_trim(fields)) + "\r" for fields in segments)
    return message.encode(_codec(header.codec), errors="replace")


def build_unparsed_ack(
    *,
    control_id: str,
    now: datetime,
    error: AckError | None = None,
    code: AckCode = AckCode.AR,
    received_control_id: str = "",
    text: str = "",
    processing_id: str = "P",
    version: str = DEFAULT_VERSION,
    codec: str = "utf-8",
    sending_application: str | tuple[str, ...] | None = None,
    sending_facility: str | tuple[str, ...] | None = None,
) -> bytes:
    """A reject for a message whose MSH could not be read, so nothing can be echoed.

    Uses ``|^~\\&``, version 2.5, MSA-2 = ``received_control_id`` (best effort, see
    :func:`best_effort_control_id`; may be empty), and one ERR (by default 102 data type
    error at ``MSH``). ``received_control_id`` is treated as text and escaped.
    """
    sep, enc = "|", DEFAULT_ENCODING_CHARACTERS
    placeholder = Header(
        field_separator=sep,
        encoding_characters=enc,
        sending_application="",
        sending_facility="",
        receiving_application="",
        receiving_facility="",
        message_datetime="",
        message_code="",
        trigger_event="",
        message_structure="",
        control_id=_Delimiters(sep, enc).escape(received_control_id[:_CONTROL_ID_MAX]),
        processing_id=processing_id,
        version_id=version,
        accept_ack_type="",
        application_ack_type="",
        character_sets=(),
        codec=codec,
    )
    if error is None:
        error = AckError(ErrorCode.DATA_TYPE_ERROR, location=ErrorLocation("MSH"))
    return build_ack(
        placeholder,
        code,
        control_id=control_id,
        now=now,
        errors=(error,),
        text=text,
        sending_application=sending_application,
        sending_facility=sending_facility,
    )


_PRINTABLE_ID: Final = re.compile(rf"[\x21-\x7e]{{1,{_CONTROL_ID_MAX}}}")


def best_effort_control_id(raw: bytes) -> str:
    """MSH-10 read from raw bytes without trusting anything else in them, or ``""``.

    For the reject of a message the header parser refused: the value is returned only when it
    is 1-199 printable ASCII characters without any of the message's delimiters.
    """
    start = raw.find(b"MSH", 0, 64)
    if start < 0 or len(raw) < start + 8:
        return ""
    sep = raw[start + 3 : start + 4]
    if sep.isalnum() or sep in (b"\r", b"\n", b" "):
        return ""
    end = len(raw)
    for terminator in (b"\r", b"\n"):
        found = raw.find(terminator, start)
        if 0 <= found < end:
            end = found
    fields = raw[start:end].split(sep)
    if len(fields) < 10:
        return ""
    try:
        value = fields[9].decode("ascii")
        encoding_characters = fields[1].decode("ascii")
    except UnicodeDecodeError:
        return ""
    if not _PRINTABLE_ID.fullmatch(value) or any(c in value for c in encoding_characters):
        return ""
    return value


class _Delimiters:
    """The sender's delimiters, and ER7 escaping with them."""

    __slots__ = (
        "_er7",
        "component",
        "encoding_characters",
        "escape_char",
        "field",
        "repetition",
        "subcomponent",
    )

    def __init__(self, field: str, encoding_characters: str) -> None:
        # A sender with fewer than four encoding characters gets the standard ones for the
        # missing positions (and sees them in our MSH-2), so every delimiter is defined.
        enc = encoding_characters
        if len(enc) < 4:
            enc += DEFAULT_ENCODING_CHARACTERS[len(enc) :]
        self.field = field or "|"
        self.encoding_characters = enc
        self.component, self.repetition = enc[0], enc[1]
        self.escape_char, self.subcomponent = enc[2], enc[3]
        self._er7 = Delimiters.from_msh(self.field, enc)

    @classmethod
    def of(cls, header: Header) -> _Delimiters:
        return cls(header.field_separator, header.encoding_characters)

    def escape(self, value: str) -> str:
        """ER7 escaping of a text value with the sender's delimiters (v2.5 section 2.7)."""
        return er7_escape(value, self._er7)

    def echo(self, value: str) -> str:
        """A value from their header, already ER7, written back as sent; only control
        characters (which would break the segment or the MLLP block) are hex-escaped."""
        if not any(c < " " for c in value):
            return value
        return "".join(self._hex(c) for c in value)

    def _hex(self, char: str) -> str:
        if char >= " ":
            return char
        e = self.escape_char
        return f"{e}X{ord(char):02X}{e}"

    def hd(self, value: str | tuple[str, ...]) -> str:
        parts = (value,) if isinstance(value, str) else value
        return self.component.join(self.escape(part) for part in parts)

    def coded(self, code: ErrorCode, joiner: str) -> str:
        return joiner.join((str(int(code)), self.escape(code.text), "HL70357"))


def _err_v25(error: AckError, delims: _Delimiters) -> list[str]:
    location = ""
    if error.location is not None:
        loc = error.location
        parts = [delims.escape(loc.segment_id), str(loc.sequence)]
        optional = (loc.field, loc.repetition, loc.component, loc.subcomponent)
        parts += ["" if n is None else str(n) for n in optional]
        location = delims.component.join(_trim(parts))
    return [
        "ERR",
        "",  # ERR-1, deprecated as of v2.5
        location,  # ERR-2 error location (ERL)
        delims.coded(error.code, delims.component),  # ERR-3 HL7 error code (CWE)
        error.severity.value,  # ERR-4
        "",  # ERR-5 application error code
        "",  # ERR-6 application error parameter
        delims.escape(error.diagnostic),  # ERR-7
        delims.escape(error.user_message),  # ERR-8
    ]


def _err_v21(errors: Sequence[AckError], delims: _Delimiters) -> list[str]:
    eld = []
    for error in errors:
        loc = error.location
        parts = ["", "", ""]
        if loc is not None:
            field = "" if loc.field is None else str(loc.field)
            parts = [delims.escape(loc.segment_id), str(loc.sequence), field]
        parts.append(delims.coded(error.code, delims.subcomponent))
        eld.append(delims.component.join(parts))
    return ["ERR", delims.repetition.join(eld)]


def _trim(fields: list[str]) -> list[str]:
    """Drop trailing empty fields (ER7 leaves them out)."""
    end = len(fields)
    while end > 1 and not fields[end - 1]:
        end -= 1
    return fields[:end]


def _version_key(version_id: str) -> tuple[int, ...]:
    """``"2.3.1"`` -> ``(2, 3, 1)``; empty or unreadable versions count as 2.5."""
    parts = version_id.strip().split(".")
    if not all(p.isdigit() for p in parts):
        parts = DEFAULT_VERSION.split(".")
    return tuple(int(p) for p in parts)


def _format_dtm(now: datetime) -> str:
    stamp = now.strftime("%Y%m%d%H%M%S")
    offset = now.utcoffset()
    if offset is None:
        return stamp
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{stamp}{sign}{hours:02d}{mins:02d}"


def _codec(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        # The header parser only picks codecs Python knows; if that ever breaks, an ACK in
        # UTF-8 is still better than none.
        return "utf-8"
