"""DTM / TS / DT / TM -> FHIR date, dateTime, instant, time (v2-to-FHIR IG DTM[dateTime]).

HL7 v2.5 section 2.A.22 (DTM): ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``; TS (2.A.77)
is a DTM in its first component. The precision sent is kept: ``2024`` stays a year, ``202403``
a month, ``20240305`` a day. A value with a time and no offset is read in the facility's IANA
zone (``zoneinfo``, so the offset is the one in force on that date: DST-correct; an ambiguous
local time during the autumn fall-back takes the first occurrence, ``fold=0``).

FHIR (R4 section 2.24.0.1, primitive types): ``dateTime`` with a time must carry seconds and a
zone, so an hour- or minute-precision value is written with ``:00`` seconds; ``instant`` must
be at least to the second with a zone; ``date`` never carries a time; ``time`` has no zone.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Final
from zoneinfo import ZoneInfo

from edge.normalize.errors import NormalizeError

__all__ = ["to_date", "to_datetime", "to_instant", "to_time"]

_DTM: Final = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?"
)
_TM: Final = re.compile(r"(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?(?:[+-]\d{4})?")


class _Parts:
    __slots__ = ("day", "fraction", "hour", "minute", "month", "offset", "second", "year")

    def __init__(self, match: re.Match[str]) -> None:
        g = match.groups()
        self.year = int(g[0])
        self.month = int(g[1]) if g[1] else None
        self.day = int(g[2]) if g[2] else None
        self.hour = int(g[3]) if g[3] else None
        self.minute = int(g[4]) if g[4] else None
        self.second = int(g[5]) if g[5] else None
        self.fraction = g[6] or ""
        self.offset: timedelta | None = None
        if g[7]:
            hours, minutes = int(g[8]), int(g[9])
            if hours > 14 or minutes > 59:
                raise ValueError("offset out of range")
            delta = timedelta(hours=hours, minutes=minutes)
            self.offset = -delta if g[7] == "-" else delta


def _parse(text: str, path: str) -> _Parts:
    value = text.strip()
    match = _DTM.fullmatch(value)
    if match is None:
        raise NormalizeError(path, "not a valid DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])")
    try:
        parts = _Parts(match)
        # Validate the calendar fields that were sent (a sent month or day of 00 is
        # invalid, not absent: ``or 1`` would let it through).
        datetime(
            parts.year or 1,
            1 if parts.month is None else parts.month,
            1 if parts.day is None else parts.day,
            parts.hour or 0,
            parts.minute or 0,
            parts.second or 0,
        )
    except ValueError:
        raise NormalizeError(path, "DTM is not a real date or time") from None
    if parts.year == 0:
        raise NormalizeError(path, "DTM year is zero: not a date")
    return parts


def _lenient_parse(text: str, path: str, warn: list[str] | None) -> _Parts | None:
    """:func:`_parse`; with ``warn``, an invalid value is reported there and reads as absent.

    Optional elements use ``warn``: a malformed date in, say, OBX-14 drops that element (the
    path is recorded in the result's warnings) instead of dead-lettering the whole result.
    """
    try:
        return _parse(text, path)
    except NormalizeError as exc:
        if warn is None:
            raise
        warn.append(str(exc))
        return None


def _date_text(p: _Parts) -> str:
    if p.month is None:
        return f"{p.year:04d}"
    if p.day is None:
        return f"{p.year:04d}-{p.month:02d}"
    return f"{p.year:04d}-{p.month:02d}-{p.day:02d}"


def _zoned(p: _Parts, zone: ZoneInfo) -> str:
    assert p.month is not None and p.day is not None and p.hour is not None
    local = datetime(p.year, p.month, p.day, p.hour, p.minute or 0, p.second or 0)
    if p.offset is not None:
        tz = timezone(p.offset)
        aware = local.replace(tzinfo=tz)
    else:
        aware = local.replace(tzinfo=zone, fold=0)
    offset = aware.utcoffset() or timedelta(0)
    text = aware.strftime("%Y-%m-%dT%H:%M:%S")
    if p.fraction:
        text += "." + p.fraction
    if offset == timedelta(0):
        return text + "Z"
    total = int(offset.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    total = abs(total)
    return f"{text}{sign}{total // 60:02d}:{total % 60:02d}"


_DATETIME_CACHE: dict[tuple[str, str, bool], str] = {}


def _cached(text: str, zone: ZoneInfo, instant: bool) -> str | None:
    key = (text, zone.key, instant)
    return _DATETIME_CACHE.get(key)


def _remember(text: str, zone: ZoneInfo, instant: bool, value: str) -> str:
    if len(_DATETIME_CACHE) >= 8192:
        _DATETIME_CACHE.clear()
    _DATETIME_CACHE[(text, zone.key, instant)] = value
    return value


def to_datetime(
    text: str, zone: ZoneInfo, path: str, *, warn: list[str] | None = None
) -> str | None:
    """FHIR ``dateTime`` for a DTM/TS value, at the precision sent; ``None`` when empty."""
    if not text.strip():
        return None
    cached = _cached(text, zone, False)
    if cached is not None:
        return cached
    p = _lenient_parse(text, path, warn)
    if p is None:
        return None
    if p.hour is None or p.day is None:
        return _remember(text, zone, False, _date_text(p))
    return _remember(text, zone, False, _zoned(p, zone))


def to_instant(
    text: str, zone: ZoneInfo, path: str, *, warn: list[str] | None = None
) -> str | None:
    """FHIR ``instant``: like :func:`to_datetime`, padded to the second (instant requires it)."""
    if not text.strip():
        return None
    cached = _cached(text, zone, True)
    if cached is not None:
        return cached
    p = _lenient_parse(text, path, warn)
    if p is None:
        return None
    p.month = p.month or 1
    p.day = p.day or 1
    p.hour = p.hour or 0
    return _remember(text, zone, True, _zoned(p, zone))


def to_date(text: str, path: str, *, warn: list[str] | None = None) -> str | None:
    """FHIR ``date``: the calendar date as written (no zone shift), at the precision sent."""
    if not text.strip():
        return None
    p = _lenient_parse(text, path, warn)
    return _date_text(p) if p is not None else None


def has_time(text: str) -> bool:
    """Whether a DTM value carries a time of day (more than 8 digits)."""
    return len(text.strip().split("+")[0].split("-")[0]) > 8


def to_time(text: str, path: str, *, warn: list[str] | None = None) -> str | None:
    """FHIR ``time`` (``hh:mm:ss[.s]``) for a TM value; the offset, if any, is dropped."""
    value = text.strip()
    if not value:
        return None
    match = _TM.fullmatch(value)
    problem = None
    if match is None:
        problem = NormalizeError(path, "not a valid TM (HH[MM[SS[.S]]][+/-ZZZZ])")
    elif int(match.group(1)) > 23 or int(match.group(2) or 0) > 59 or int(match.group(3) or 0) > 59:
        problem = NormalizeError(path, "TM is not a real time")
    if problem is not None:
        if warn is None:
            raise problem
        warn.append(str(problem))
        return None
    assert match is not None
    hour, minute, second, fraction = match.groups()
    out = f"{hour}:{minute or '00'}:{second or '00'}"
    return out + (f".{fraction}" if fraction else "")
