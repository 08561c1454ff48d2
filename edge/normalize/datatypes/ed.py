"""ED (encapsulated data, HL7 v2.5 section 2.A.24) and RP -> Attachment (IG ED[Attachment]).

ED-2/ED-3 (type of data / subtype) -> contentType when they form a MIME type; ED-4 (table 0299
encoding: A, Hex, Base64) decides how ED-5 becomes ``Attachment.data`` (always base64).
RP (reference pointer, 2.A.65): RP-1 -> url when it is a URI, else title.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

from edge.normalize.errors import NormalizeError
from edge.normalize.v2 import Composite

__all__ = ["attachment", "reference_pointer"]

_MIME_TYPES: Final = {
    "PDF": "application/pdf",
    "RTF": "application/rtf",
    "HTML": "text/html",
    "XML": "application/xml",
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "PNG": "image/png",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "TEXT": "text/plain",
    "TXT": "text/plain",
    "OCTET-STREAM": "application/octet-stream",
}
_TYPE: Final = re.compile(r"^[A-Za-z]+$")


def _content_type(kind: str, subtype: str) -> str | None:
    if subtype and "/" in subtype:
        return subtype.lower()
    if subtype.upper() in _MIME_TYPES:
        return _MIME_TYPES[subtype.upper()]
    if kind and subtype and _TYPE.match(kind) and _TYPE.match(subtype.replace("-", "")):
        major = {
            "AP": "application",
            "IM": "image",
            "TX": "text",
            "AU": "audio",
            "VI": "video",
        }.get(kind.upper(), kind.lower())
        return f"{major}/{subtype.lower()}"
    if kind.upper() == "TEXT" or kind.upper() == "TX":
        return "text/plain"
    return None


def attachment(v: Composite, path: str, *, warn: list[str] | None = None) -> dict[str, Any] | None:
    """An Attachment for an ED; :class:`NormalizeError` when ED-5 does not decode (with
    ``warn``: reported there, and no attachment)."""
    data, encoding = v[5], v[4].upper()
    if not data:
        return None
    out: dict[str, Any] = {}
    content_type = _content_type(v[2], v[3])
    if content_type:
        out["contentType"] = content_type
    try:
        if encoding == "BASE64":
            raw = base64.b64decode("".join(data.split()), validate=True)
        elif encoding == "HEX":
            raw = binascii.unhexlify("".join(data.split()))
        else:
            raw = data.encode("utf-8")
    except (binascii.Error, ValueError):
        problem = NormalizeError(f"{path}.5", f"data does not decode as {encoding or 'A'}")
        if warn is None:
            raise problem from None
        warn.append(str(problem))
        return None
    out["data"] = base64.b64encode(raw).decode("ascii")
    out["size"] = len(raw)
    return out


def reference_pointer(v: Composite) -> dict[str, Any] | None:
    """An Attachment for an RP (a pointer to data held elsewhere)."""
    pointer = v[1]
    if not pointer:
        return None
    out: dict[str, Any] = {}
    content_type = _content_type(v[3], v[4])
    if content_type:
        out["contentType"] = content_type
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", pointer):
        out["url"] = pointer
    else:
        out["title"] = pointer
    return out
