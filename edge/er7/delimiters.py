"""The delimiters a message declares in MSH-1 and MSH-2 (HL7 v2.5 section 2.5.4, v2.7 2.5.4).

MSH-1 is the field separator itself; MSH-2 lists, in order, the component separator, the
repetition separator, the escape character and the subcomponent separator, and from v2.7 an
optional fifth, the truncation character (recommended ``#``). FHS and BHS declare theirs the
same way in FHS-1/2 and BHS-1/2.
"""

from __future__ import annotations

from typing import NamedTuple

# The segment terminator is always CR (v2.5 section 2.5.4); LF and CRLF are read too, because
# files and many senders use them.
SEGMENT_TERMINATORS = ("\r\n", "\r", "\n")


class Delimiters(NamedTuple):
    """The six delimiters of one message. ``truncation`` is ``""`` when MSH-2 has four."""

    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str
    truncation: str = ""

    @classmethod
    def from_msh(cls, field_separator: str, encoding_characters: str) -> Delimiters:
        """Build from MSH-1 and MSH-2 that have passed :func:`encoding_problem`."""
        enc = encoding_characters
        return cls(field_separator, enc[0], enc[1], enc[2], enc[3], enc[4:5])

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it would be written for these delimiters."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


DEFAULT = Delimiters("|", "^", "~", "\\", "&")


def _is_delimiter_char(char: str) -> bool:
    # Printable ASCII that is not a letter or digit: anything else could be data, a segment
    # terminator, or change meaning under a multi-byte codec.
    return len(char) == 1 and "!" <= char <= "~" and not char.isalnum()


def field_separator_problem(char: str) -> str | None:
    """Why ``char`` cannot be a field separator (MSH-1), or ``None`` if it can."""
    if not char:
        return "field separator is missing"
    if not _is_delimiter_char(char):
        return "field separator must be a printable ASCII character other than a letter or digit"
    return None


def encoding_problem(field_separator: str, encoding_characters: str) -> str | None:
    """Why MSH-2 is unusable, or ``None`` if it is fine.

    Four characters (v2.5 section 2.14.9.2) or five (v2.7 adds the truncation character), all
    printable ASCII non-alphanumerics, all distinct and different from the field separator:
    otherwise no delimiter could be told apart from another, or from data.
    """
    enc = encoding_characters
    if not enc:
        return "encoding characters are missing"
    if len(enc) not in (4, 5):
        return "encoding characters must be four or five characters"
    if not all(_is_delimiter_char(c) for c in enc):
        return "encoding characters must be printable ASCII characters other than letters or digits"
    if len(set(enc + field_separator)) != len(enc) + 1:
        return "encoding characters must differ from each other and from the field separator"
    return None
