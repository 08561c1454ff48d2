"""Split one received block into its messages (HL7 v2.5 section 2.10.3, batch protocol).

A block is what one MLLP frame or one file holds: one message, several messages back to back,
or a batch::

    [FHS]                  file header
    { [BHS]                batch header
      { MSH ... }          messages
      [BTS] }              batch trailer (BTS-1: message count)
    [FTS]                  file trailer (FTS-1: batch count)

Each message comes back as the bytes that were sent, sliced out of the block: from its MSH to
the terminator of its last segment (blank lines after it are left out). A block that is one
message comes back whole, untouched, leading BOM and whitespace included, so that
:func:`edge.er7.header.parse_header` still sees the BOM.

Only ASCII bytes are looked at (segment IDs and CR/LF), so this works before the codec is known
for every codec in which CR and LF cannot be part of a multi-byte character: all of table 0211
except UTF-16/32, which the batch protocol does not carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from edge.er7.delimiters import encoding_problem, field_separator_problem
from edge.er7.errors import DATA_TYPE_ERROR, SEGMENT_SEQUENCE_ERROR, ER7Error

__all__ = ["Batch", "BatchHeader", "BatchTrailer", "split"]

_WHITESPACE: Final = b" \t\r\n\x0b\x0c"
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_CONTROL: Final = (b"MSH", b"FHS", b"BHS", b"BTS", b"FTS")
_LINE: Final = re.compile(rb"([^\r\n]*)(?:\r\n|\r|\n)?")
_SPLIT_MARKERS: Final = tuple(sep + seg_id for sep in (b"\r", b"\n") for seg_id in _CONTROL)


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """FHS or BHS. Field values are ER7 text as sent, decoded as UTF-8 (invalid bytes U+FFFD)."""

    segment_id: str  # "FHS" or "BHS"
    offset: int  # byte offset of the segment in the block
    field_separator: str  # FHS-1 / BHS-1
    encoding_characters: str  # FHS-2 / BHS-2
    sending_application: str  # -3
    sending_facility: str  # -4
    receiving_application: str  # -5
    receiving_facility: str  # -6
    creation_datetime: str  # -7
    name: str  # -9 (file/batch name, id or type)
    control_id: str  # -11
    reference: str  # -12 (reference file/batch control id)


@dataclass(frozen=True, slots=True)
class BatchTrailer:
    """BTS or FTS. ``count`` is BTS-1 (messages) or FTS-1 (batches) as sent, maybe ``""``."""

    segment_id: str  # "BTS" or "FTS"
    offset: int
    count: str
    comment: str  # BTS-2 / FTS-2


@dataclass(frozen=True, slots=True)
class Batch:
    """The messages of one block, and its batch envelope when it had one."""

    messages: tuple[bytes, ...]
    file_header: BatchHeader | None = None
    batch_headers: tuple[BatchHeader, ...] = ()
    batch_trailers: tuple[BatchTrailer, ...] = ()
    file_trailer: BatchTrailer | None = None

    @property
    def is_batch(self) -> bool:
        """Whether the block used the batch protocol at all (any FHS/BHS/BTS/FTS)."""
        return bool(
            self.file_header or self.batch_headers or self.batch_trailers or self.file_trailer
        )

    def __repr__(self) -> str:
        return f"<Batch messages={len(self.messages)} batch={self.is_batch}>"


def split(block: bytes) -> Batch:
    """The messages in ``block`` (see the module docstring for the grammar).

    Raises :class:`ER7Error` (code 100, segment sequence error) when the block does not start
    with FHS, BHS or MSH, when a segment stands outside any message (e.g. right after BHS),
    when FHS is not first, or when anything but blank lines follows FTS; code 102 when an FHS or
    BHS declares unusable delimiters. An empty or blank block has no messages.
    """
    start = _content_start(block)
    if block.startswith(b"MSH", start) and all(
        block.find(marker, start) < 0 for marker in _SPLIT_MARKERS
    ):
        return Batch(messages=(block,))
    return _Splitter(block).run(start)


def _content_start(block: bytes) -> int:
    start = 3 if block.startswith(_UTF8_BOM) else 0
    while start < len(block) and block[start] in _WHITESPACE:
        start += 1
    return start


def _is(line: bytes, seg_id: bytes) -> bool:
    # The segment ID must be followed by a delimiter (or the end), so "MSHX|" is not MSH.
    return line.startswith(seg_id) and (len(line) == 3 or not chr(line[3]).isalnum())


class _Splitter:
    def __init__(self, block: bytes) -> None:
        self.block = block
        self.messages: list[bytes] = []
        self.file_header: BatchHeader | None = None
        self.batch_headers: list[BatchHeader] = []
        self.batch_trailers: list[BatchTrailer] = []
        self.file_trailer: BatchTrailer | None = None
        self.msg_start = -1  # offset of the open message's MSH, -1 when none is open
        self.msg_end = -1  # end (after terminator) of the open message's last segment
        self.seen_any = False
        self.segment_number = 0

    def run(self, pos: int) -> Batch:
        for match in _LINE.finditer(self.block, pos):
            line_start, line_end = match.span(1)
            after = match.end()
            if after == line_start:
                break  # the empty match at the end of the block
            line = self.block[line_start:line_end]
            if line.strip(_WHITESPACE):
                self.segment_number += 1
                self._line(line, line_start, after)
        self._close_message()
        return Batch(
            messages=tuple(self.messages),
            file_header=self.file_header,
            batch_headers=tuple(self.batch_headers),
            batch_trailers=tuple(self.batch_trailers),
            file_trailer=self.file_trailer,
        )

    def _error(self, reason: str, code: int = SEGMENT_SEQUENCE_ERROR) -> ER7Error:
        return ER7Error(f"segment {self.segment_number}", reason, err_code=code)

    def _line(self, line: bytes, pos: int, after: int) -> None:
        if self.file_trailer is not None:
            raise self._error("segment after FTS")
        if _is(line, b"MSH"):
            self._close_message()
            self.msg_start, self.msg_end = pos, after
        elif _is(line, b"FHS"):
            if self.seen_any:
                raise self._error("FHS must be the first segment of a block")
            self.file_header = self._header(line, pos)
        elif _is(line, b"BHS"):
            self._close_message()
            self.batch_headers.append(self._header(line, pos))
        elif _is(line, b"BTS") or _is(line, b"FTS"):
            self._close_message()
            fields = _fields(line)
            trailer = BatchTrailer(
                segment_id=fields[0], offset=pos, count=_at(fields, 1), comment=_at(fields, 2)
            )
            if trailer.segment_id == "FTS":
                self.file_trailer = trailer
            else:
                self.batch_trailers.append(trailer)
        elif self.msg_start >= 0:
            self.msg_end = after
        elif not self.seen_any:
            raise self._error("block does not start with FHS, BHS or MSH")
        else:
            raise self._error("segment outside any message")
        self.seen_any = True

    def _close_message(self) -> None:
        if self.msg_start >= 0:
            self.messages.append(self.block[self.msg_start : self.msg_end])
            self.msg_start = self.msg_end = -1

    def _header(self, line: bytes, pos: int) -> BatchHeader:
        text = line.decode("utf-8", errors="replace")
        seg_id = text[:3]
        separator = text[3:4]
        problem = field_separator_problem(separator)
        if problem:
            raise self._error(f"{seg_id}-1: {problem}", DATA_TYPE_ERROR)
        fields = text.split(separator)
        fields.insert(1, separator)  # -1 is the separator itself, as in MSH
        problem = encoding_problem(separator, fields[2])
        if problem:
            raise self._error(f"{seg_id}-2: {problem}", DATA_TYPE_ERROR)
        return BatchHeader(
            segment_id=seg_id,
            offset=pos,
            field_separator=separator,
            encoding_characters=fields[2],
            sending_application=_at(fields, 3),
            sending_facility=_at(fields, 4),
            receiving_application=_at(fields, 5),
            receiving_facility=_at(fields, 6),
            creation_datetime=_at(fields, 7),
            name=_at(fields, 9),
            control_id=_at(fields, 11),
            reference=_at(fields, 12),
        )


def _fields(line: bytes) -> list[str]:
    text = line.decode("utf-8", errors="replace")
    separator = text[3:4]
    return text.split(separator) if separator else [text]


def _at(fields: list[str], n: int) -> str:
    return fields[n] if n < len(fields) else ""
