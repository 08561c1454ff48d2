"""Escape sequences in ER7 text data (HL7 v2.5 section 2.7, v2.7 section 2.7).

A sequence is the escape character, a code, and the escape character again (``\\F\\`` with the
default delimiters). :func:`unescape` turns data as sent into the text it stands for;
:func:`escape` does the reverse for text we write. Both work on one component or subcomponent
value: splitting on delimiters happens before unescaping, so an escaped delimiter never splits.

What each sequence becomes:

- ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``: the field, component, subcomponent, repetition separator and
  the escape character (2.7.1); ``\\P\\`` the truncation character (v2.7; ``#`` when MSH-2 has
  only four characters).
- ``\\H\\`` and ``\\N\\`` (start/end highlighting, 2.7.2): dropped; we keep text, not display.
- ``\\Xhh...\\`` (2.7.4): the bytes given in hex, decoded with the message's codec (invalid bytes
  become U+FFFD). An odd number of digits or a non-hex digit keeps the sequence as sent.
- ``\\Cxxyy\\`` and ``\\Mxxyyzz\\`` (2.7.3, ISO 2022 character set switches): dropped. The message
  was already decoded with one codec, so the switch cannot be honoured afterwards; dropping the
  marker keeps the text around it, which is what every reader of our output wants.
- ``\\Zxx\\`` (2.7.5, locally defined): kept as sent, escape characters included, because only
  the sender knows what it means.
- Formatted text commands (2.7.6, meaningful in FT): ``\\.br\\`` is a line break; ``\\.sp n\\``
  ends the line and skips n lines (n newlines, at least one); ``\\.sk n\\`` is n spaces;
  ``\\.ce\\`` ends the line. ``\\.fi\\ \\.nf\\ \\.in n\\ \\.ti n\\`` (fill, indent) only change
  layout and are dropped. Counts are capped at 99 so that a hostile count cannot blow up memory.
- Anything else, and an escape character with no closing one, is kept as sent.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from edge.er7.delimiters import DEFAULT, Delimiters

_MAX_REPEAT: Final = 99
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def unescape(value: str, delimiters: Delimiters = DEFAULT, codec: str = "utf-8") -> str:
    """The text that ``value`` (one component or subcomponent, as sent) stands for.

    ``codec`` decodes ``\\Xhh\\`` bytes; pass the message's codec. Never raises for any input.
    """
    esc = delimiters.escape
    if esc not in value:
        return value
    out: list[str] = []
    pos = 0
    length = len(value)
    while pos < length:
        start = value.find(esc, pos)
        if start < 0:
            out.append(value[pos:])
            break
        end = value.find(esc, start + 1)
        if end < 0:
            out.append(value[pos:])
            break
        out.append(value[pos:start])
        replacement = _sequence(value[start + 1 : end], delimiters, codec)
        if replacement is None:
            # Not a sequence we know: the opening escape character is data. Resume right after
            # it, so that its would-be closing character can still open a real sequence.
            out.append(esc)
            pos = start + 1
            continue
        out.append(replacement)
        pos = end + 1
    return "".join(out)


def _sequence(code: str, d: Delimiters, codec: str) -> str | None:
    """What one escape sequence stands for, or ``None`` to keep it as sent."""
    if len(code) == 1:
        return _single(code, d)
    if not code:
        return None
    kind = code[0]
    if kind == "X":
        digits = code[1:]
        if len(digits) % 2 or not _HEX_DIGITS.issuperset(digits):
            return None
        return bytes.fromhex(digits).decode(codec, errors="replace")
    if kind == "Z":
        return d.escape + code + d.escape
    if kind in "CM" and len(code) in (5, 7) and _HEX_DIGITS.issuperset(code[1:]):
        return ""
    if kind == ".":
        return _formatting(code[1:])
    return None


def _single(code: str, d: Delimiters) -> str | None:
    if code == "F":
        return d.field
    if code == "S":
        return d.component
    if code == "T":
        return d.subcomponent
    if code == "R":
        return d.repetition
    if code == "E":
        return d.escape
    if code == "P":
        return d.truncation or "#"
    if code in "HNX":  # highlighting on/off; "\\X\\" is hex data of no bytes
        return ""
    return None


def _formatting(command: str) -> str | None:
    name, arg = command[:2], command[2:].strip()
    if name == "br" and not arg:
        return "\n"
    if name == "ce" and not arg:
        return "\n"
    if name in ("fi", "nf") and not arg:
        return ""
    if name in ("sp", "sk"):
        count = _count(arg, default=1)
        if count is None:
            return None
        return ("\n" if name == "sp" else " ") * max(count, 1 if name == "sp" else 0)
    if name in ("in", "ti"):
        return "" if _count(arg.lstrip("+-"), default=0) is not None else None
    return None


def _count(arg: str, *, default: int) -> int | None:
    if not arg:
        return default
    if not arg.isascii() or not arg.isdigit():
        return None
    return min(int(arg), _MAX_REPEAT)


@lru_cache(maxsize=64)
def _escape_table(d: Delimiters) -> dict[int, str]:
    esc = d.escape
    table = {
        ord(d.escape): f"{esc}E{esc}",
        ord(d.field): f"{esc}F{esc}",
        ord(d.component): f"{esc}S{esc}",
        ord(d.subcomponent): f"{esc}T{esc}",
        ord(d.repetition): f"{esc}R{esc}",
    }
    # Control characters as hex data (2.7.4): CR would end the segment, LF is read as a segment
    # end too, and 0x0B/0x1C would break the MLLP block around the message.
    for code in range(0x20):
        table[code] = f"{esc}X{code:02X}{esc}"
    if d.truncation:
        table[ord(d.truncation)] = f"{esc}P{esc}"
    return table


def escape(text: str, delimiters: Delimiters = DEFAULT) -> str:
    """``text`` written as ER7 data for one component or subcomponent.

    Every delimiter (and the truncation character, when the message declares one) becomes its
    escape sequence, control characters (CR, LF, ...) become ``\\Xhh\\``.
    ``unescape(escape(t)) == t`` for every ``t`` with any ASCII-compatible codec.
    """
    return text.translate(_escape_table(delimiters))
