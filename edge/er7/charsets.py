"""MSH-18 character set names (HL7 table 0211) to Python codecs.

Table 0211 (v2.5 section 2.15.9.18, extended in v2.6/v2.7) names the character set of the whole
message. Senders also write common non-table spellings (``UTF-8``, ``ISO-8859-1``); those are
accepted too, because refusing a message over the spelling of a charset everybody agrees on helps
nobody. Anything else is unknown and the caller's fallback applies.
"""

from __future__ import annotations

import codecs
from typing import Final

_TABLE_0211: dict[str, str] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",  # ISO 646, the same 7-bit set
    # ISO IR14 is JIS X 0201 (roman + half-width katakana); Shift_JIS agrees with it on every
    # single byte it defines.
    "ISO IR14": "shift_jis",
    "ISO IR87": "iso2022_jp",  # JIS X 0208, reached through ISO 2022 escapes
    "ISO IR159": "iso2022_jp_1",  # JIS X 0212, likewise
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",  # the usual 8-bit form of KS X 1001
    "BIG-5": "big5",
    # Table 0211 describes UNICODE only as "ISO/IEC 10646"; every implementation we know of
    # (HAPI, nHapi) reads it as UTF-8.
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    # CNS 11643-1992 has no Python codec: it is left unknown on purpose.
}

# ISO 8859 parts: the table names 8859/1..9 and 8859/15; later parts are accepted when Python
# has them (there is no part 12).
for _part in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16):
    _TABLE_0211[f"8859/{_part}"] = f"iso8859_{_part}"

_ALIASES: dict[str, str] = {
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "UTF-16": "utf-16",
    "UTF-32": "utf-32",
    "US-ASCII": "ascii",
    "ISO-8859-1": "iso8859_1",
    "ISO8859-1": "iso8859_1",
    "ISO_8859-1": "iso8859_1",
    "LATIN1": "iso8859_1",
    "ISO-8859-15": "iso8859_15",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}

# Store canonical names so that callers can compare codecs by name.
_TABLE_0211 = {k: codecs.lookup(v).name for k, v in _TABLE_0211.items()}
_ALIASES = {k: codecs.lookup(v).name for k, v in _ALIASES.items()}

# Codecs in which every byte below 0x80 is that ASCII character, alone: delimiters and segment
# terminators can be found in the bytes before decoding. The ISO 2022 and UTF-16/32 codecs are
# not like this, nor are Shift_JIS/Big5/GB18030 (their second bytes reach down into ASCII).
# Names are canonical (``codecs.lookup(name).name``).
ASCII_TRANSPARENT: Final = frozenset(
    {"ascii", "utf-8", "cp1252", "euc_kr"}
    | {f"iso8859-{p}" for p in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16)}
)


def codec_for(charset: str) -> str | None:
    """The canonical Python codec name for one MSH-18 value, or ``None`` when unknown.

    Matching ignores case and surrounding blanks. The result always names a text codec that
    ``bytes.decode`` accepts.
    """
    key = charset.strip().upper()
    return _TABLE_0211.get(key) or _ALIASES.get(key)


def canonical_codec(codec: str) -> str:
    """Canonical Python name of ``codec`` (``"iso8859-1"`` for every Latin-1 spelling).

    Raises ``LookupError`` for an unknown codec: that is a configuration mistake, not the
    sender's.
    """
    return codecs.lookup(codec).name
