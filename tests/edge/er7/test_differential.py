"""Differential tests over the corpora: hl7apy as the structure oracle, python-hl7 for escapes.

hl7apy (tolerant validation, no groups) splits the same text into segments, fields,
repetitions, components and subcomponents; every leaf it reports must equal ours at the same
position. It keeps leaf values as sent (it does not unescape), so python-hl7's ``unescape`` is
the oracle for escape sequences.

Known differences of the oracles, compensated narrowly here (each one is hl7apy's or
python-hl7's behaviour, not a reading of the standard):

- hl7apy splits segments on CR only: it is given the text with LF/CRLF turned into CR.
- hl7apy refuses a fifth encoding character before v2.7 (InvalidEncodingChars), although it
  changes no splitting: it is given MSH-2 without it.
- hl7apy strips whitespace around each segment (parser.parse_segments), so the last leaf of a
  segment is compared after ``rstrip``; it drops whitespace-only fields and named components,
  so completeness is checked on fields with non-blank text only.
- hl7apy parses NM into Decimal and DT/DTM into datetime, forgetting the text: those leaves
  are compared by value (and its re-encoding of years before 1000 loses the leading zero).
- hl7apy names components and subcomponents after its version's datatype; those beyond the
  datatype (name ``None`` among named siblings) have no known position and are not compared.
- python-hl7 renders ``\\H\\ \\N\\`` as ``_`` and ``\\.br\\`` as CR, drops unknown sequences and
  decodes ``\\X\\`` bytes as Latin-1: it is given our choices through its ``app_map``, and only
  values whose sequences are all standard and whose hex bytes are ASCII are compared.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import hl7
from hl7.util import unescape as hl7_unescape
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from edge.er7 import ER7Error, Message, parse
from tests.corpus import iter_all_messages

_POSITION = re.compile(r"_(\d+)$")


def _oracle_text(msg: Message) -> str:
    text = msg.text.replace("\r\n", "\r").replace("\n", "\r")
    h = msg.header
    if len(h.encoding_characters) == 5 and not h.version_id.startswith(("2.7", "2.8", "2.9")):
        prefix = "MSH" + h.field_separator + h.encoding_characters
        text = "MSH" + h.field_separator + h.encoding_characters[:4] + text[len(prefix) :]
    return text


def _positions(children: list[Any]) -> list[int | None]:
    """Positions of hl7apy's children. Named ``XX_n`` (composite datatype): n, blank ones were
    dropped. Named after a base datatype (``ST``): all were kept, in order. Name ``None``
    (beyond hl7apy's datatype): unknown, and then siblings' order says nothing either."""
    names: list[str | None] = [child.name for child in children]
    if any(name is None or _POSITION.search(name) for name in names):
        return [
            int(m.group(1)) if name and (m := _POSITION.search(name)) else None for name in names
        ]
    return list(range(1, len(children) + 1))


def _leaf(sub: Any) -> str:
    """hl7apy's leaf value as sent, for leaves it keeps as strings."""
    value = sub.value
    return value if isinstance(value, str) else str(value.value)


def _same_leaf(sub: Any, mine: str) -> bool:
    value = sub.value
    inner = value if isinstance(value, str) else value.value
    if isinstance(inner, str):
        return inner == mine
    # hl7apy parsed it (NM -> Decimal, DT/DTM -> datetime) and forgot the text: compare values.
    # Its re-encoding drops leading zeros of years before 1000 (strftime), hence the zfill.
    if isinstance(inner, Decimal):
        try:
            return Decimal(mine) == inner
        except InvalidOperation:
            return False
    return str(value.to_er7()).zfill(len(mine)) == mine


def test_against_hl7apy(corpora_dir: Path) -> None:
    stats: dict[str, int] = defaultdict(int)
    mismatches: list[str] = []
    for mid, raw in iter_all_messages(corpora_dir):
        try:
            msg = parse(raw)
        except ER7Error:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = parse_message(
                    _oracle_text(msg),
                    find_groups=False,
                    validation_level=VALIDATION_LEVEL.TOLERANT,
                )
        except Exception:  # hl7apy's own limits (unsupported version, odd names)
            stats["hl7apy refused"] += 1
            continue
        stats["messages"] += 1
        ours = msg.segments()
        if [s.name for s in theirs.children] != [s.id for s in ours]:
            mismatches.append(f"{mid}: segment list")
            continue
        for their_seg, seg in zip(theirs.children, ours, strict=True):
            by_number: dict[int, list[Any]] = defaultdict(list)
            unnamed = False
            for field in their_seg.children:
                m = _POSITION.search(field.name or "")
                if m is None:
                    unnamed = True
                    continue
                by_number[int(m.group(1))].append(field)
            last = len(seg)
            if not unnamed:
                sent = {n for n in range(1, last + 1) if seg.raw_field(n).strip()}
                if sent != set(by_number):
                    mismatches.append(f"{mid}: {seg.id} #{seg.index + 1} fields present")
            for n, reps in by_number.items():
                field = seg.field(n)
                stats["fields"] += 1
                if n <= 2 and seg.id == "MSH":
                    expected = field.raw
                    if n == 2 and _oracle_text(msg)[4:9] != msg.text[4:9]:
                        expected = field.raw[:4]  # the fifth character was hidden from hl7apy
                    if _leaf(reps[0].children[0].children[0]) != expected:
                        mismatches.append(f"{mid}: MSH-{n}")
                    continue
                if len(reps) != len(field.repetitions):
                    mismatches.append(f"{mid}: {seg.id}-{n} repetitions")
                    continue
                for r, rep in enumerate(reps, 1):
                    for c, comp in zip(_positions(rep.children), rep.children, strict=True):
                        if c is None:
                            continue
                        for s, sub in zip(_positions(comp.children), comp.children, strict=True):
                            if s is None:
                                continue
                            mine = field.raw_component(c, s, r)
                            if n == last:
                                mine = mine.rstrip()
                            stats["leaves"] += 1
                            if not _same_leaf(sub, mine):
                                mismatches.append(f"{mid}: {seg.id}-{n}[{r}].{c}.{s}")
    print(dict(stats))
    assert mismatches == [], mismatches[:20]
    assert stats["messages"] > 900
    assert stats["leaves"] > 100_000


_STANDARD_SEQUENCE = re.compile(r"[FSTREHNP]|\.(br|sp\d*|ce|fi|nf|sk\d*)|X([0-7][0-9A-Fa-f])*")


def test_unescape_against_python_hl7(corpora_dir: Path) -> None:
    compared = skipped = 0
    mismatches: list[str] = []
    for mid, raw in iter_all_messages(corpora_dir):
        try:
            msg = parse(raw)
        except ER7Error:
            continue
        d = msg.delimiters
        if d.escape not in msg.text:
            continue
        container = hl7.parse(_oracle_text(msg))
        app_map = {"H": "", "N": "", ".br": "\n", ".ce": "\n", ".sp": "\n"}
        app_map["P"] = d.truncation or "#"
        for seg in msg:
            for n in range(3 if seg.id == "MSH" else 1, len(seg) + 1):
                field = seg.field(n)
                if d.escape not in field.raw:
                    continue
                for r, _ in enumerate(field.repetitions, 1):
                    for c, component in enumerate(field.components(r), 1):
                        for s, value in enumerate(component.split(d.subcomponent), 1):
                            if d.escape not in value:
                                continue
                            pieces = value.split(d.escape)
                            sequences = pieces[1::2]
                            if len(pieces) % 2 == 0 or not all(
                                _STANDARD_SEQUENCE.fullmatch(q) for q in sequences
                            ):
                                skipped += 1
                                continue
                            expected = hl7_unescape(container, value, app_map)
                            compared += 1
                            if field.component(c, s, r) != expected:
                                mismatches.append(f"{mid}: {seg.id}-{n}[{r}].{c}.{s}")
    print({"compared": compared, "skipped": skipped})
    assert mismatches == [], mismatches[:20]
    assert compared > 50
