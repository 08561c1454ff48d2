"""A lazy ER7 tokenizer: one HL7 v2 message in, segments/fields/components out.

Construction rules (HL7 v2.5 section 2.5, 2.6; v2.7 adds the truncation character):

- The message is decoded once, with the codec MSH-18 names (or the caller's), then split into
  segments on CR, LF or CRLF (the standard says CR; files and many senders use the others).
  Blank lines are skipped. Every segment begins with a three-character segment ID, upper-case
  letters and digits, starting with a letter (2.5.2), followed by the field separator or the end
  of the segment.
- Field n of a segment is the n-th piece after the segment ID. MSH is the exception (2.14.9):
  MSH-1 *is* the field separator and MSH-2 the encoding characters, so MSH-n is at split index
  n-1. Both are atomic: never split into repetitions or components, never unescaped.
- Fields split into repetitions, repetitions into components, components into subcomponents,
  and only the leaf values are unescaped (:mod:`edge.er7.escape`), so an escaped delimiter
  never splits anything.
- Nothing is split until it is asked for; positions are 1-based as in HL7 and a position beyond
  what was sent reads as ``""`` (not present). The HL7 null, ``""`` sent literally, reads as the
  two-character string ``'""'`` so that "delete this value" stays distinguishable from "no value"
  (:data:`NULL`, :meth:`Field.is_null`).

Errors are :class:`ER7Error` (or :class:`HeaderError` for MSH) naming a location, never data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Final, NamedTuple

from edge.er7.charsets import canonical_codec
from edge.er7.delimiters import Delimiters
from edge.er7.errors import DATA_TYPE_ERROR, SEGMENT_SEQUENCE_ERROR, ER7Error
from edge.er7.escape import unescape
from edge.er7.header import Header, parse_header, parse_header_text

__all__ = ["NULL", "Field", "Message", "Segment", "parse"]

NULL: Final = '""'
"""The HL7 null (v2.5 section 2.5.3): the sender asks the receiver to delete the value."""

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_WHITESPACE: Final = " \t\r\n\x0b\x0c\ufeff"


class _Context(NamedTuple):
    delimiters: Delimiters
    codec: str


def parse(
    raw: bytes | str, *, codec: str | None = None, fallback_codec: str = "latin-1"
) -> Message:
    """Tokenize one message.

    ``raw`` is the message as received (bytes) or already decoded (str). For bytes the codec is
    ``codec`` if given, else MSH-18 through table 0211, else ``fallback_codec``
    (:func:`edge.er7.header.parse_header`); decoding is strict.

    Raises :class:`HeaderError` when MSH cannot be read, and :class:`ER7Error` when the bytes do
    not decode (code 102, location = byte offset), when a segment ID is malformed or a second
    MSH appears (code 100: a block of several messages goes through
    :func:`edge.er7.batch.split` first).
    """
    if isinstance(raw, str):
        header = parse_header_text(raw, fallback_codec=fallback_codec)
        text = raw.lstrip(_WHITESPACE)
    else:
        header = parse_header(raw, fallback_codec=fallback_codec)
        if codec is not None:
            header = dataclasses.replace(header, codec=canonical_codec(codec))
        start = 3 if raw.startswith(_UTF8_BOM) else 0
        try:
            text = raw[start:].decode(header.codec) if start else raw.decode(header.codec)
        except UnicodeDecodeError as exc:
            raise ER7Error(
                f"offset {start + exc.start}",
                f"bytes are not valid {header.codec}",
                err_code=DATA_TYPE_ERROR,
            ) from None
        text = text.lstrip(_WHITESPACE)
    return Message(header, text)


_valid_ids: set[str] = set()


def _check_segment_id(seg_id: str, line: str, index: int, field_separator: str) -> None:
    if seg_id in _valid_ids and (len(line) == 3 or line[3] == field_separator):
        return
    if (
        len(seg_id) == 3
        and seg_id.isascii()
        and seg_id.isalnum()
        and seg_id[0].isalpha()
        and seg_id == seg_id.upper()
        and (len(line) == 3 or line[3] == field_separator)
    ):
        if len(_valid_ids) < 4096:  # bounded: the set only speeds up the common case
            _valid_ids.add(seg_id)
        return
    raise ER7Error(
        f"segment {index + 1}",
        "segment ID must be three upper-case letters or digits followed by the field separator",
        err_code=SEGMENT_SEQUENCE_ERROR,
    )


class Message:
    """One tokenized message. Segments are split out of the text on first use."""

    __slots__ = ("_ctx", "_ids", "_lines", "_segments", "header", "text")

    def __init__(self, header: Header, text: str) -> None:
        self.header = header
        self.text = text
        """The whole message, decoded, as sent (segment terminators included)."""
        delimiters = Delimiters.from_msh(header.field_separator, header.encoding_characters)
        self._ctx = _Context(delimiters, header.codec)
        if "\n" in text:
            text = text.replace("\r\n", "\r").replace("\n", "\r")
        lines = [line for line in text.split("\r") if line and not line.isspace()]
        fs = delimiters.field
        ids = [line[:3] for line in lines]
        for i, seg_id in enumerate(ids):
            _check_segment_id(seg_id, lines[i], i, fs)
            if seg_id == "MSH" and i:
                raise ER7Error(
                    f"segment {i + 1}",
                    "a second MSH: one message expected, split blocks with edge.er7.batch",
                    err_code=SEGMENT_SEQUENCE_ERROR,
                )
        self._lines = lines
        self._ids = ids
        self._segments: list[Segment] | None = None

    @property
    def delimiters(self) -> Delimiters:
        return self._ctx.delimiters

    @property
    def codec(self) -> str:
        return self._ctx.codec

    def __len__(self) -> int:
        return len(self._lines)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._all())

    def __repr__(self) -> str:
        # Control id and type only: never content.
        h = self.header
        return (
            f"<Message {h.message_code}^{h.trigger_event} control_id={h.control_id!r} "
            f"segments={len(self._lines)}>"
        )

    def _all(self) -> list[Segment]:
        if self._segments is None:
            ctx = self._ctx
            self._segments = [
                Segment(seg_id, line, i, ctx)
                for i, (seg_id, line) in enumerate(zip(self._ids, self._lines, strict=True))
            ]
        return self._segments

    @property
    def segment_ids(self) -> list[str]:
        """The segment IDs in order (cheap: no segment is split)."""
        return list(self._ids)

    def segments(self, id: str | None = None) -> list[Segment]:
        """All segments, or those with segment ID ``id``, in message order."""
        segments = self._all()
        if id is None:
            return list(segments)
        return [segments[i] for i, seg_id in enumerate(self._ids) if seg_id == id]

    def segment(self, id: str, occurrence: int = 1) -> Segment | None:
        """The ``occurrence``-th (1-based) segment with ID ``id``, or ``None``."""
        seen = 0
        for i, seg_id in enumerate(self._ids):
            if seg_id == id:
                seen += 1
                if seen == occurrence:
                    return self._all()[i]
        return None

    def get(self, path: str) -> str:
        """The unescaped value at ``path``, ``""`` when not present.

        ``path`` is ``SEG[occurrence]-field[repetition].component.subcomponent`` with everything
        after the field number optional (defaults 1): ``"PID-3[2].4.1"``, ``"OBX[2]-5"``,
        ``"MSH-9.2"``. A path that stops above a leaf reads its first leaf, e.g. ``"PID-5"`` is
        the family name. Raises ``ValueError`` for a malformed path (a caller's mistake).
        """
        seg_id, occurrence, n, rep, comp, sub = _message_path(path)
        segment = self.segment(seg_id, occurrence)
        if segment is None:
            return ""
        return segment.field(n).component(comp, sub, rep)


_MESSAGE_PATH: Final = re.compile(
    r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?-(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?"
)
_SEGMENT_PATH: Final = re.compile(r"(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?")


@lru_cache(maxsize=1024)
def _message_path(path: str) -> tuple[str, int, int, int, int, int]:
    m = _MESSAGE_PATH.fullmatch(path)
    if m is None:
        raise ValueError(f"not an HL7 path: {path!r}")
    numbers = [int(g) if g else 1 for g in m.groups()[1:]]
    if min(numbers) < 1:
        raise ValueError(f"HL7 positions are 1-based: {path!r}")
    return (m.group(1), numbers[0], numbers[1], numbers[2], numbers[3], numbers[4])


@lru_cache(maxsize=1024)
def _segment_path(path: str) -> tuple[int, int, int, int]:
    m = _SEGMENT_PATH.fullmatch(path)
    if m is None:
        raise ValueError(f"not a field path: {path!r}")
    numbers = [int(g) if g else 1 for g in m.groups()]
    if min(numbers) < 1:
        raise ValueError(f"HL7 positions are 1-based: {path!r}")
    return (numbers[0], numbers[1], numbers[2], numbers[3])


class Segment:
    """One segment. ``raw`` is its ER7 text without terminator; fields split on first use."""

    __slots__ = ("_ctx", "_fields", "id", "index", "raw")

    def __init__(self, seg_id: str, raw: str, index: int, ctx: _Context) -> None:
        self.id = seg_id
        self.raw = raw
        self.index = index
        """0-based position in the message."""
        self._ctx = ctx
        self._fields: list[str] | None = None

    def __repr__(self) -> str:
        return f"<Segment {self.id} #{self.index + 1}>"

    @property
    def fields(self) -> list[str]:
        """Raw field texts, indexed as in HL7: ``fields[n]`` is field n, ``fields[0]`` the ID."""
        fields = self._fields
        if fields is None:
            fs = self._ctx.delimiters.field
            fields = self.raw.split(fs)
            if self.id == "MSH":
                fields.insert(1, fs)  # MSH-1 is the separator itself (2.14.9.1)
            self._fields = fields
        return fields

    def __len__(self) -> int:
        """The number of fields sent (the highest field number present)."""
        return len(self.fields) - 1

    def raw_field(self, n: int) -> str:
        """Field n as sent (ER7 text, all repetitions), ``""`` when not present."""
        if n < 1:
            raise ValueError("HL7 field numbers are 1-based")
        fields = self.fields
        return fields[n] if n < len(fields) else ""

    def field(self, n: int) -> Field:
        """Field n (1-based, MSH numbered as the standard does)."""
        if n < 1:
            raise ValueError("HL7 field numbers are 1-based")
        fields = self.fields
        return Field(
            fields[n] if n < len(fields) else "",
            self._ctx,
            self.id == "MSH" and n <= 2,
            self.id,
            n,
        )

    def get(self, path: str) -> str:
        """The unescaped value at ``path`` = ``field[repetition].component.subcomponent``.

        ``"3[2].4.1"``; parts after the field number default to 1 (see :meth:`Message.get`).
        """
        n, rep, comp, sub = _segment_path(path)
        return self.field(n).component(comp, sub, rep)


def _pick(value: str, separator: str, position: int) -> str:
    if separator not in value:
        return value if position == 1 else ""
    parts = value.split(separator)
    return parts[position - 1] if position <= len(parts) else ""


class Field:
    """One field occurrence (all its repetitions). ``raw`` is the ER7 text as sent.

    ``repr`` names the location only (``<Field PID-5>``), never the value.
    """

    __slots__ = ("_atomic", "_ctx", "_tree", "number", "raw", "segment_id")

    def __init__(self, raw: str, ctx: _Context, atomic: bool, segment_id: str, number: int) -> None:
        self.raw = raw
        self._ctx = ctx
        self._atomic = atomic
        self.segment_id = segment_id
        self.number = number
        self._tree: list[list[list[str]]] | None = None

    def _split(self) -> list[list[list[str]]]:
        """repetitions -> components -> subcomponents, split once on first leaf access."""
        tree = self._tree
        if tree is None:
            raw = self.raw
            if self._atomic:
                tree = [[[raw]]]
            else:
                d = self._ctx.delimiters
                sub = d.subcomponent
                tree = [
                    [component.split(sub) for component in rep.split(d.component)]
                    for rep in raw.split(d.repetition)
                ]
            self._tree = tree
        return tree

    def __repr__(self) -> str:
        return f"<Field {self.location}>"

    @property
    def location(self) -> str:
        return f"{self.segment_id}-{self.number}"

    @property
    def is_empty(self) -> bool:
        """Not present: nothing was sent for this field."""
        return not self.raw

    @property
    def is_null(self) -> bool:
        """The HL7 null ``""``: the sender asks for the stored value to be deleted."""
        return self.raw == NULL

    @property
    def repetitions(self) -> list[str]:
        """Raw repetition texts (one element for a non-repeating field; none when empty)."""
        if not self.raw:
            return []
        if self._atomic:
            return [self.raw]
        return self.raw.split(self._ctx.delimiters.repetition)

    def components(self, rep: int = 1) -> list[str]:
        """Raw component texts of repetition ``rep`` (empty list when not present)."""
        if self._atomic:
            return [self.raw] if rep == 1 and self.raw else []
        d = self._ctx.delimiters
        value = _pick(self.raw, d.repetition, rep)
        return value.split(d.component) if value else []

    def subcomponents(self, c: int = 1, rep: int = 1) -> list[str]:
        """Raw subcomponent texts of component ``c`` of repetition ``rep`` (``[]``: absent)."""
        if c < 1 or rep < 1:
            raise ValueError("HL7 positions are 1-based")
        try:
            subs = self._split()[rep - 1][c - 1]
        except IndexError:
            return []
        return [] if subs == [""] else list(subs)

    def raw_component(self, c: int = 1, sub: int = 1, rep: int = 1) -> str:
        """The ER7 text of one subcomponent as sent (not unescaped)."""
        if c < 1 or sub < 1 or rep < 1:
            raise ValueError("HL7 positions are 1-based")
        try:
            return self._split()[rep - 1][c - 1][sub - 1]
        except IndexError:
            return ""

    def component(self, c: int = 1, sub: int = 1, rep: int = 1) -> str:
        """Subcomponent ``sub`` of component ``c`` of repetition ``rep``, unescaped.

        ``""`` when not present; the HL7 null reads as ``'""'``.
        """
        value = self.raw_component(c, sub, rep)
        if self._atomic:
            return value
        ctx = self._ctx
        if ctx.delimiters.escape in value:
            return unescape(value, ctx.delimiters, ctx.codec)
        return value

    def values(self) -> list[list[list[str]]]:
        """Every leaf, unescaped, in one call: ``values()[r - 1][c - 1][s - 1]``.

        The fast way to read a whole field (one Python call instead of one per subcomponent);
        ``[]`` when the field is empty. MSH-1 and MSH-2 come back whole, as ``[[[raw]]]``.
        """
        raw = self.raw
        if not raw:
            return []
        if self._atomic:
            return [[[raw]]]
        ctx = self._ctx
        d = ctx.delimiters
        sub = d.subcomponent
        if d.escape not in raw:
            return [[c.split(sub) for c in r.split(d.component)] for r in raw.split(d.repetition)]
        codec = ctx.codec
        return [
            [[unescape(v, d, codec) for v in c.split(sub)] for c in r.split(d.component)]
            for r in raw.split(d.repetition)
        ]

    def text(self, rep: int = 1) -> str:
        """Repetition ``rep`` unescaped as one string, for fields that are one value (ST, TX,
        FT, NM...). Any component separators sent stay in place, indistinguishable from escaped
        ones: use :meth:`component` for composite fields.
        """
        if self._atomic:
            return self.raw if rep == 1 else ""
        ctx = self._ctx
        value = _pick(self.raw, ctx.delimiters.repetition, rep)
        if ctx.delimiters.escape not in value:
            return value
        return unescape(value, ctx.delimiters, ctx.codec)
