"""ER7 (HL7 v2 "pipe and hat") encoding: header, tokenizer, escapes, batches.

The hot path reads MSH with :func:`parse_header` (no full parse) to ACK; normalization then
tokenizes the whole message with :func:`parse`. Blocks holding several messages (FHS/BHS
batches, several MSH in one frame) are split with :func:`split` first.
"""

from __future__ import annotations

from edge.er7.batch import Batch, BatchHeader, BatchTrailer, split
from edge.er7.delimiters import DEFAULT, Delimiters
from edge.er7.errors import ER7Error, HeaderError
from edge.er7.escape import escape, unescape
from edge.er7.header import Header, parse_header, parse_header_text
from edge.er7.tokenizer import NULL, Field, Message, Segment, parse

__all__ = [
    "DEFAULT",
    "NULL",
    "Batch",
    "BatchHeader",
    "BatchTrailer",
    "Delimiters",
    "ER7Error",
    "Field",
    "Header",
    "HeaderError",
    "Message",
    "Segment",
    "escape",
    "parse",
    "parse_header",
    "parse_header_text",
    "split",
    "unescape",
]
