"""Reading composite HL7 values: :class:`Composite`, one level of components.

A field repetition is a list of components; a component of a composite type nested in another
(CX-4, an HD) is a list of subcomponents. Datatype mappers take a :class:`Composite` so the
same code reads a CX whether it is a field (``PID-3``) or an HD whether it is a component
(``CX-4``) or a subcomponent. Values are unescaped on read; the HL7 null ``""`` reads as empty
(a delete instruction is not something a FHIR snapshot can carry).
"""

from __future__ import annotations

from typing import Final

from edge.er7 import Field
from edge.er7.delimiters import Delimiters
from edge.er7.escape import unescape

__all__ = ["Composite", "first", "repetitions"]

_NULL: Final = '""'


class Composite:
    """One composite value split at one level. Positions are 1-based, as in HL7."""

    __slots__ = ("_codec", "_d", "_level", "_parts", "raw")

    def __init__(self, raw: str, level: int, delimiters: Delimiters, codec: str) -> None:
        self.raw = raw
        self._level = level
        self._d = delimiters
        self._codec = codec
        if level == 0:
            self._parts = raw.split(delimiters.component) if raw else []
        elif level == 1:
            self._parts = raw.split(delimiters.subcomponent) if raw else []
        else:
            self._parts = [raw] if raw else []

    def __repr__(self) -> str:
        return f"<Composite parts={len(self._parts)}>"

    def __bool__(self) -> bool:
        parts = self._parts
        if len(parts) == 1:
            return parts[0] != _NULL
        return any(p and p != _NULL for p in parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __getitem__(self, i: int) -> str:
        """Part ``i`` as text (its first subcomponent when it has several), ``""`` if absent."""
        parts = self._parts
        if i > len(parts):
            return ""
        value = parts[i - 1]
        if not value or value == _NULL:
            return ""
        if self._level == 0 and self._d.subcomponent in value:
            value = value.split(self._d.subcomponent, 1)[0]
        if self._d.escape in value:
            value = unescape(value, self._d, self._codec)
        return value.strip()

    def cache_key(self) -> tuple[str, int, Delimiters, str]:
        """What determines every value read from this composite (for caches)."""
        return (self.raw, self._level, self._d, self._codec)

    def text(self) -> str:
        """The whole value as one text (for ST/TX/FT sent where a composite was expected)."""
        if self._d.escape in self.raw:
            return unescape(self.raw, self._d, self._codec)
        return self.raw

    def part(self, i: int) -> Composite:
        """Part ``i`` split one level down (an HD inside a CX, a CWE inside a CQ...)."""
        parts = self._parts
        raw = parts[i - 1] if i <= len(parts) else ""
        return Composite(raw, min(self._level + 1, 2), self._d, self._codec)

    def tail(self, start: int) -> Composite:
        """Parts ``start``.. as a composite (a datatype embedded at an offset, e.g. XCN-2..)."""
        parts = self._parts[start - 1 :]
        sep = self._d.component if self._level == 0 else self._d.subcomponent
        return Composite(sep.join(parts), self._level, self._d, self._codec)


def repetitions(field: Field, delimiters: Delimiters, codec: str) -> list[Composite]:
    """The non-empty repetitions of ``field`` as composites."""
    out = []
    for rep in field.repetitions:
        if rep and rep != _NULL:
            value = Composite(rep, 0, delimiters, codec)
            if value:
                out.append(value)
    return out


def split_repetitions(raw: str, delimiters: Delimiters, codec: str) -> list[Composite]:
    """:func:`repetitions` for a field's raw ER7 text (not MSH-1/MSH-2, which are atomic)."""
    if not raw or raw == _NULL:
        return []
    out = []
    for rep in raw.split(delimiters.repetition) if delimiters.repetition in raw else (raw,):
        if rep and rep != _NULL:
            value = Composite(rep, 0, delimiters, codec)
            if value:
                out.append(value)
    return out


def first(field: Field, delimiters: Delimiters, codec: str) -> Composite | None:
    """The first non-empty repetition of ``field``, or ``None``."""
    reps = repetitions(field, delimiters, codec)
    return reps[0] if reps else None
