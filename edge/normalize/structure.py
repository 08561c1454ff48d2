"""Which abstract message structure a message has (HL7 v2.5 section 2.14.9.9, MSH-9.3).

MSH-9.3 when it names a structure we map; else the structure table 0354 gives for MSH-9.1
and MSH-9.2 (``ADT^A04`` -> ``ADT_A01``; generated from the IG's MessageStructure map); else
MSH-9.3 as sent, or ``<code>_<event>``.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Final

from edge.er7 import Header
from edge.normalize import vocab

__all__ = ["message_structure"]

_STRUCTURE: Final = re.compile(r"^[A-Z][A-Z0-9]{2}_[A-Z0-9]{3}$")


def message_structure(header: Header, supported: Container[str]) -> str:
    sent = header.message_structure.split("^")[0].strip().upper()
    if sent in supported:
        return sent
    code, event = header.message_code.upper(), header.trigger_event.upper()
    derived = vocab.structure_for(code, event) if event else None
    if derived is not None:
        return derived
    if _STRUCTURE.match(sent):
        return sent
    return f"{code}_{event}" if event else code
