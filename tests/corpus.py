"""The HL7 v2 messages in the shared test corpora (../shared/corpora), for tests to iterate.

This module reads the corpora with its own simple rules, independent of ``edge.er7``, so that
tests can compare the product's splitting and parsing against it.

Which files hold ER7 (:func:`iter_corpus_files`):

- Files named ``*.csv, *.json, *.fhir, *.md, *.xml, *.ndjson, *.properties`` never do.
- A *plain* ER7 file starts (after an optional UTF-8 BOM and whitespace) with ``MSH``, ``FHS``
  or ``BHS`` followed by a character that is not a letter or digit (the field separator).
- A *listing* is a text file that does not start that way but has lines starting with ``MSH``
  plus a separator at column 0 (izgateway-v2tofhir/messages.txt and segments.txt,
  hapi-hl7v2/messages.txt): messages interleaved with comments and annotations.
- nhapi/BadInputs/ holds fuzzer-made crashers, not messages: left out here, available from
  :func:`iter_bad_inputs` for robustness tests.

Splitting (:func:`iter_all_messages`):

- Plain files: lines end at CR, LF or CRLF. Each line starting with ``MSH`` + separator begins
  a message; FHS/BHS/BTS/FTS lines belong to no message; every other line belongs to the open
  message. A message's bytes are the exact slice of the file from its MSH to the end (terminator
  included) of its last line that looks like a segment, so trailing blank lines and trailing
  non-segment text are trimmed off while odd content *inside* the message is kept.
- Listings are read line by line (LF, CR dropped). A line ending in a backslash continues on the
  next line, whose leading whitespace is dropped (izgateway's convention). Lines starting with
  ``#`` or ``//``, ``/* ... */`` blocks, and lines starting with whitespace (izgateway's
  ``@FHIRPath`` assertions) are annotations and skipped; a blank line or a comment ends the open
  message. Segment lines before any MSH (fragments) are dropped. The messages are rebuilt with
  CR after each segment: they are not byte slices of the file.

Ids are paths relative to the corpora directory, with ``#k`` (1-based) for the k-th message of
a file holding more than one. :func:`iter_single_messages` gives the plain files that hold
exactly one message and no batch segments.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "iter_all_messages",
    "iter_bad_inputs",
    "iter_corpus_files",
    "iter_single_messages",
]

NON_HL7_SUFFIXES = frozenset({".csv", ".json", ".fhir", ".md", ".xml", ".ndjson", ".properties"})
BAD_INPUTS = Path("nhapi") / "BadInputs"

_BOM = b"\xef\xbb\xbf"
_START = re.compile(rb"(?:MSH|FHS|BHS)[^A-Za-z0-9\r\n]")
_MSH_LINE = re.compile(rb"MSH[^A-Za-z0-9\r\n]")
_BATCH_LINE = re.compile(rb"(?:FHS|BHS|BTS|FTS)(?:[^A-Za-z0-9\r\n]|$)")
_SEGMENT_LINE = re.compile(rb"[A-Z][A-Z0-9]{2}(?:[^A-Za-z0-9\r\n]|$)")
_LINE = re.compile(rb"([^\r\n]*)(?:\r\n|\r|\n)?")


def _relative(corpora_dir: Path, path: Path) -> str:
    return path.relative_to(corpora_dir).as_posix()


def _is_bad_input(corpora_dir: Path, path: Path) -> bool:
    return path.relative_to(corpora_dir).parts[:2] == BAD_INPUTS.parts


def _is_plain(data: bytes) -> bool:
    body = data[3:] if data.startswith(_BOM) else data
    return _START.match(body.lstrip()) is not None


def _is_listing(data: bytes) -> bool:
    return not _is_plain(data) and any(_MSH_LINE.match(line) for line in data.split(b"\n"))


def iter_corpus_files(corpora_dir: Path) -> list[Path]:
    """Every corpus file holding HL7 v2 ER7 (plain or listing), sorted by path."""
    files = []
    for path in sorted(corpora_dir.rglob("*")):
        if not path.is_file() or path.suffix.lower() in NON_HL7_SUFFIXES:
            continue
        if _is_bad_input(corpora_dir, path):
            continue
        data = path.read_bytes()
        if _is_plain(data) or _is_listing(data):
            files.append(path)
    return files


def _lines(data: bytes) -> list[tuple[bytes, int, int]]:
    """(line, start offset, offset after its terminator) for every line of ``data``."""
    out = []
    for match in _LINE.finditer(data):
        start, end = match.span(1)
        if match.end() == start:
            break
        out.append((data[start:end], start, match.end()))
    return out


def _split_plain(data: bytes) -> list[bytes]:
    messages: list[bytes] = []
    start = end = -1
    for line, line_start, after in _lines(data):
        if _MSH_LINE.match(line):
            if start >= 0:
                messages.append(data[start:end])
            start, end = line_start, after
        elif _BATCH_LINE.match(line):
            if start >= 0:
                messages.append(data[start:end])
            start = end = -1
        elif start >= 0 and _SEGMENT_LINE.match(line):
            end = after
    if start >= 0:
        messages.append(data[start:end])
    return messages


def _split_listing(data: bytes) -> list[bytes]:
    messages: list[list[bytes]] = []
    current: list[bytes] | None = None
    in_block_comment = False
    raw_lines = [line.rstrip(b"\r") for line in data.split(b"\n")]
    i = 0
    while i < len(raw_lines):
        line = raw_lines[i]
        i += 1
        if in_block_comment:
            in_block_comment = b"*/" not in line
            continue
        if line.startswith(b"/*"):
            in_block_comment = b"*/" not in line
            current = None
            continue
        if not line.strip() or line.startswith((b"#", b"//")):
            current = None
            continue
        if line[:1].isspace():
            # An annotation (and its own continuation lines, which are indented too).
            continue
        while line.endswith(b"\\") and i < len(raw_lines):
            line = line[:-1] + raw_lines[i].lstrip()
            i += 1
        if _MSH_LINE.match(line):
            current = [line]
            messages.append(current)
        elif current is not None and _SEGMENT_LINE.match(line):
            current.append(line)
    return [b"".join(segment + b"\r" for segment in message) for message in messages]


def _messages_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return _split_plain(data) if _is_plain(data) else _split_listing(data)


def iter_all_messages(corpora_dir: Path) -> list[tuple[str, bytes]]:
    """(id, bytes) of every message in every corpus file, batches and listings split."""
    out: list[tuple[str, bytes]] = []
    for path in iter_corpus_files(corpora_dir):
        rel = _relative(corpora_dir, path)
        messages = _messages_of(path)
        if len(messages) == 1:
            out.append((rel, messages[0]))
        else:
            out.extend((f"{rel}#{k}", message) for k, message in enumerate(messages, 1))
    return out


def iter_single_messages(corpora_dir: Path) -> list[tuple[str, bytes]]:
    """(id, bytes) for every plain file that is exactly one message (no batch segments).

    The bytes are the file's own, from its first byte (BOM and leading whitespace kept) to the
    end of its last segment line: trailing blank lines and non-HL7 text are trimmed.
    """
    out: list[tuple[str, bytes]] = []
    for path in iter_corpus_files(corpora_dir):
        data = path.read_bytes()
        if not _is_plain(data):
            continue
        lines = _lines(data)
        if sum(1 for line, _, _ in lines if _MSH_LINE.match(line)) != 1:
            continue
        if any(_BATCH_LINE.match(line) for line, _, _ in lines):
            continue
        end = max(after for line, _, after in lines if _SEGMENT_LINE.match(line))
        out.append((_relative(corpora_dir, path), data[:end]))
    return out


def iter_bad_inputs(corpora_dir: Path) -> list[tuple[str, bytes]]:
    """(id, bytes) of the fuzzer-found crashers under nhapi/BadInputs (any bytes at all)."""
    root = corpora_dir / BAD_INPUTS
    return [
        (_relative(corpora_dir, path), path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    ]
