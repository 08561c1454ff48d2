"""``hie-edge convert FILE [--timezone ZONE] [--config F]``: HL7 v2 -> FHIR R4 on stdout.

Each message of FILE (one message, several back to back, or an FHS/BHS batch) becomes one
transaction Bundle, printed as one JSON line. A message that cannot be converted is reported
on stderr by its position, control id and the path that failed (no content), and the command
ends with status 65 (EX_DATAERR) after converting the others.

The lead wires :func:`run_convert` into the argparse CLI: ``args.file`` (path, ``-`` for
stdin), ``args.timezone`` (optional IANA zone overriding ``facility.timezone``), and the
loaded settings or ``None`` (no config: facility id ``convert``, UTC, facility-scoped URIs for
unmapped assigning authorities).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.cli.exits import DATAERR, NOINPUT, OK, USAGE, CLIError
from edge.config.model import Settings
from edge.er7 import ER7Error, split
from edge.normalize import NormalizeContext, NormalizeError, normalize

__all__ = ["run_convert"]


def _context(args: argparse.Namespace, settings: Settings | None) -> NormalizeContext:
    zone = getattr(args, "timezone", None)
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CLIError(USAGE, f"--timezone: {zone!r} is not an IANA time zone") from None
    if settings is None:
        return NormalizeContext(facility_id="convert", timezone=zone or "UTC", validation="full")
    context = NormalizeContext.from_settings(settings, validation="full")
    if zone:
        context = NormalizeContext(
            facility_id=context.facility_id,
            timezone=zone,
            identifier_systems=dict(context.identifier_systems),
            unmapped_authority=context.unmapped_authority,
            fallback_codec=context.fallback_codec,
            validation="full",
        )
    return context


def _read(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise CLIError(NOINPUT, f"{file}: {exc.strerror or 'cannot read'}") from None


def run_convert(
    args: argparse.Namespace,
    settings: Settings | None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Convert ``args.file``; returns the exit status (0, or 65 when a message failed)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    context = _context(args, settings)
    data = _read(args.file)
    try:
        messages = split(data).messages
    except ER7Error as exc:
        print(f"{args.file}: not HL7 v2 ER7: {exc}", file=err)
        return DATAERR
    status = OK
    for position, raw in enumerate(messages, 1):
        try:
            result = normalize(raw, context=context)
        except (NormalizeError, ER7Error) as exc:
            print(f"{args.file}: message {position}: {exc}", file=err)
            status = DATAERR
            continue
        for warning in result.warnings:
            print(
                f"{args.file}: message {position} ({result.control_id}): dropped {warning}",
                file=err,
            )
        out.write(result.bundle_json())
        out.write("\n")
    return status
