"""DR (date/time range, HL7 v2.5 section 2.A.20) and the FHIR ``x[x]`` choice between a
Period and a dateTime.

IG DR[Period]: DR-1 -> start, DR-2 -> end, each a DTM (the range's components carry the
DTM in their first subcomponent, as TS did before v2.6).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from edge.normalize.datatypes import dtm
from edge.normalize.v2 import Composite

__all__ = ["bounds", "period_or_datetime"]


def bounds(v: Composite | None, zone: ZoneInfo, path: str,
           warn: list[str] | None) -> tuple[str | None, str | None]:
    """The range's start and end as FHIR dateTimes (``None`` for an empty or unreadable end;
    ``path`` is the field's, e.g. ``SPM-17``: the ends are ``.1`` and ``.2``)."""
    if v is None:
        return None, None
    start = dtm.to_datetime(v.part(1)[1], zone, f"{path}.1", warn=warn)
    end = dtm.to_datetime(v.part(2)[1], zone, f"{path}.2", warn=warn)
    return start, end


def period_or_datetime(target: dict[str, Any], element: str, start: str | None,
                       end: str | None) -> None:
    """Set the choice ``element[x]``: ``elementPeriod`` when both ends are known, else
    ``elementDateTime`` from the start; nothing from an end alone."""
    if start and end:
        target[f"{element}Period"] = {"start": start, "end": end}
    elif start:
        target[f"{element}DateTime"] = start
