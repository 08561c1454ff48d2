"""The MSH header, read fast enough for the ACK path (HL7 v2.5 chapter 2, section 2.14.9).

Only the fields that routing, duplicate detection and acknowledgement need are extracted. The
raw message bytes are never modified: the header is read from them, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.er7.charsets import ASCII_TRANSPARENT, canonical_codec, codec_for
from edge.er7.delimiters import encoding_problem, field_separator_problem
from edge.er7.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    HeaderError,
)

__all__ = ["Header", "HeaderError", "parse_header", "parse_header_text"]


@dataclass(frozen=True, slots=True)
class Header:
    """What the ACK path needs from MSH. Field values are ER7 text as sent (not unescaped);
    composite fields (MSH-3..6) keep their component separators so an ACK can echo them."""

    field_separator: str  # MSH-1
    encoding_characters: str  # MSH-2: component, repetition, escape, subcomponent[, truncation]
    sending_application: str  # MSH-3
    sending_facility: str  # MSH-4
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    message_datetime: str  # MSH-7
    message_code: str  # MSH-9.1
    trigger_event: str  # MSH-9.2
    message_structure: str  # MSH-9.3 (may be empty)
    control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    version_id: str  # MSH-12.1
    accept_ack_type: str  # MSH-15
    application_ack_type: str  # MSH-16
    character_sets: tuple[str, ...]  # MSH-18 repetitions, as sent
    codec: str  # Python codec chosen from MSH-18, or the configured fallback

    @property
    def component_separator(self) -> str:
        return self.encoding_characters[0]

    @property
    def enhanced_mode(self) -> bool:
        """Enhanced acknowledgement mode when MSH-15 or MSH-16 is valued (v2.5 section 2.9.3)."""
        return bool(self.accept_ack_type or self.application_ack_type)


_WHITESPACE = b" \t\r\n\x0b\x0c"
_UTF8_BOM = b"\xef\xbb\xbf"
# UTF-32 first: its little-endian BOM begins with the UTF-16 one.
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_WIDE_CODECS = frozenset({"utf-16", "utf-32"})
_LATIN_1 = "iso8859-1"


def parse_header(raw: bytes, *, fallback_codec: str = "latin-1") -> Header:
    """Read MSH from the start of one message's bytes, without parsing the rest.

    Accepts a UTF-8 BOM (which then decides the codec: UTF-8), a UTF-16/32 BOM, leading
    whitespace, and CR, LF or CRLF after MSH. The codec is MSH-18's first repetition mapped
    through table 0211 (:func:`edge.er7.charsets.codec_for`), else ``fallback_codec``; it is the
    canonical Python name (``codecs.lookup(...).name``). A message declared ASCII that holds
    8-bit bytes gets ``fallback_codec`` too, as does one declared UTF-16/32 without a BOM (its
    MSH was readable as single bytes, so it is not in that encoding).

    Raises :class:`HeaderError` when there is no MSH at the start (``field="MSH"``, code 100),
    when MSH-1 or MSH-2 is missing or unusable, and when MSH-9.1 (message type), MSH-10
    (control id) or MSH-12 (version id) is empty (code 101): v2.5 section 2.9.2 has the receiver
    reject such a message with AR, and without MSH-9/MSH-10 no meaningful ACK can be built.
    ``LookupError`` means ``fallback_codec`` is not a codec: a configuration mistake.
    """
    fallback = canonical_codec(fallback_codec)
    start = 0
    bom_codec = ""
    if raw.startswith(_UTF8_BOM):
        start, bom_codec = 3, "utf-8"
    elif raw[:1] in (b"\xff", b"\xfe", b"\x00"):
        for bom, codec in _WIDE_BOMS:
            if raw.startswith(bom):
                try:
                    text = raw.decode(codec)  # the codec consumes the BOM
                except UnicodeDecodeError:
                    raise HeaderError(
                        "MSH", f"bytes are not valid {codec}", err_code=DATA_TYPE_ERROR
                    ) from None
                return _header_from_text(text.lstrip(), codec, pinned=True)
    # Skip leading whitespace without copying the message.
    while start < len(raw) and raw[start] in _WHITESPACE:
        start += 1
    if raw[start : start + 3] != b"MSH":
        raise HeaderError(
            "MSH", "message does not start with an MSH segment", err_code=SEGMENT_SEQUENCE_ERROR
        )
    end = _segment_end(raw, start)
    segment = raw[start:end]
    # Latin-1 maps each byte to one character: delimiters and MSH-18 can be read before the
    # codec is known; the segment is decoded again below when the codec needs it.
    fields = _split_msh(segment.decode(_LATIN_1))
    charsets = _repetitions(fields, 18)
    declared = codec_for(charsets[0]) if charsets else None
    if declared is None and not segment.isascii():
        declared, fields = _multibyte_retry(segment, fields)
        charsets = _repetitions(fields, 18)
    codec = bom_codec or declared or fallback
    if codec == "ascii" and not raw.isascii():
        # Declared ASCII but 8-bit bytes were sent: a common mislabel. ASCII is a subset of
        # every fallback codec, so reading with the fallback loses nothing that was declared.
        codec = fallback
    elif codec in _WIDE_CODECS:
        # Declared UTF-16/32, yet "MSH" was read as single bytes and there was no BOM: the
        # message is not in that encoding whatever it says.
        codec = fallback
    if codec != _LATIN_1 and not (codec in ASCII_TRANSPARENT and segment.isascii()):
        try:
            fields = _split_msh(segment.decode(codec))
        except UnicodeDecodeError as exc:
            raise HeaderError(
                "MSH",
                f"byte at offset {start + exc.start} is not valid {codec}",
                err_code=DATA_TYPE_ERROR,
            ) from None
        charsets = _repetitions(fields, 18)
    return _build(fields, charsets, codec)


def _multibyte_retry(segment: bytes, fields: list[str]) -> tuple[str | None, list[str]]:
    """Find a multi-byte MSH-18 that a delimiter byte inside a character pushed further right.

    In Shift_JIS, Big5 or GB18030 the second byte of a character can be ``|``, so splitting the
    undecoded bytes may count too many fields before MSH-18. Any later field naming such a
    charset is tried: decode with it, split again, and keep it if MSH-18 now names it.
    """
    for value in fields[19:]:
        candidate = codec_for(value.split(fields[2][1], 1)[0])
        if candidate is None or candidate in ASCII_TRANSPARENT:
            continue
        try:
            decoded = _split_msh(segment.decode(candidate))
        except (UnicodeDecodeError, HeaderError):
            continue
        again = _repetitions(decoded, 18)
        if again and codec_for(again[0]) == candidate:
            return candidate, decoded
    return None, fields


def parse_header_text(text: str, *, fallback_codec: str = "latin-1") -> Header:
    """:func:`parse_header` for a message that is already text.

    ``codec`` is still derived from MSH-18 (or the fallback): it says how the sender encoded the
    message, which matters when the message is written back out.
    """
    return _header_from_text(text.lstrip("\ufeff \t\r\n\x0b\x0c"), canonical_codec(fallback_codec))


def _header_from_text(text: str, codec: str, *, pinned: bool = False) -> Header:
    if not text.startswith("MSH"):
        raise HeaderError(
            "MSH", "message does not start with an MSH segment", err_code=SEGMENT_SEQUENCE_ERROR
        )
    end = len(text)
    for terminator in ("\r", "\n"):
        i = text.find(terminator, 3)
        if 0 <= i < end:
            end = i
    fields = _split_msh(text[:end])
    charsets = _repetitions(fields, 18)
    if not pinned and charsets:
        codec = codec_for(charsets[0]) or codec
    return _build(fields, charsets, codec)


def _segment_end(raw: bytes, start: int) -> int:
    cr = raw.find(b"\r", start)
    lf = raw.find(b"\n", start)
    if cr < 0:
        return len(raw) if lf < 0 else lf
    return cr if lf < 0 or cr < lf else lf


def _split_msh(segment: str) -> list[str]:
    """MSH split so that ``fields[n]`` is MSH-n (``fields[0]`` is "MSH", ``fields[1]`` MSH-1)."""
    field_separator = segment[3:4]
    problem = field_separator_problem(field_separator)
    if problem:
        code = REQUIRED_FIELD_MISSING if not field_separator else DATA_TYPE_ERROR
        raise HeaderError("MSH-1", problem, err_code=code)
    fields = segment.split(field_separator)
    fields.insert(1, field_separator)
    encoding = fields[2]
    problem = encoding_problem(field_separator, encoding)
    if problem:
        code = REQUIRED_FIELD_MISSING if not encoding else DATA_TYPE_ERROR
        raise HeaderError("MSH-2", problem, err_code=code)
    return fields


def _field(fields: list[str], n: int) -> str:
    return fields[n] if n < len(fields) else ""


def _repetitions(fields: list[str], n: int) -> tuple[str, ...]:
    value = _field(fields, n)
    return tuple(value.split(fields[2][1])) if value else ()


def _first_components(fields: list[str], n: int) -> list[str]:
    """Components of the first repetition of MSH-n (ER7 text, not unescaped)."""
    encoding = fields[2]
    return _field(fields, n).split(encoding[1], 1)[0].split(encoding[0])


def _build(fields: list[str], charsets: tuple[str, ...], codec: str) -> Header:
    msg_type = _first_components(fields, 9)
    if not msg_type[0].strip():
        raise HeaderError("MSH-9", "message type (MSH-9.1) is empty")
    control_id = _field(fields, 10)
    if not control_id.strip():
        raise HeaderError("MSH-10", "message control id is empty")
    version = _first_components(fields, 12)[0]
    if not version.strip():
        raise HeaderError("MSH-12", "version id is empty")
    return Header(
        field_separator=fields[1],
        encoding_characters=fields[2],
        sending_application=_field(fields, 3),
        sending_facility=_field(fields, 4),
        receiving_application=_field(fields, 5),
        receiving_facility=_field(fields, 6),
        message_datetime=_field(fields, 7),
        message_code=msg_type[0],
        trigger_event=msg_type[1] if len(msg_type) > 1 else "",
        message_structure=msg_type[2] if len(msg_type) > 2 else "",
        control_id=control_id,
        processing_id=_first_components(fields, 11)[0],
        version_id=version,
        accept_ack_type=_field(fields, 15),
        application_ack_type=_field(fields, 16),
        character_sets=charsets,
        codec=codec,
    )
