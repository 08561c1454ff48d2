"""Checking an envelope's preconditions inside the transaction that stores it.

The FHIR API checks ``If-Match`` and ``If-None-Exist`` once when it accepts a request (to answer
quickly), but only a check in the storing transaction is free of races: the processor calls
:func:`failed_precondition` on the group-commit writer, before the first write, so a failed
precondition stores nothing of the request (FHIR R4 3.1.0.5, 3.1.0.8.1, 3.1.0.11.2).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from edge.normalize.fhir_json import Precondition
from edge.store.resources import ResourceStore
from edge.store.schema import RESOURCES


def current_version(conn: sqlite3.Connection, rtype: str, rid: str) -> int | None:
    row = conn.execute(f"SELECT max(version) FROM {RESOURCES} WHERE type = ? AND id = ?",  # noqa: S608
                       (rtype, rid)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def failed_precondition(conn: sqlite3.Connection, store: ResourceStore,
                        preconditions: Sequence[Precondition]) -> str | None:
    """Why the first failing precondition fails (PHI-free, with its ``(HTTP nnn)``), or None."""
    for item in preconditions:
        if item.version is not None:
            current = current_version(conn, item.type, item.id)
            if current != item.version:
                found = "no version" if current is None else f"version {current}"
                return (f"{_where(item, 'ifMatch', 'If-Match')}: the current version is "
                        f"{found}, not {item.version} (HTTP 412)")
        if item.absent is not None and store.search(conn, identifier=item.absent,
                                                    type=item.type):
            return (f"{_where(item, 'ifNoneExist', 'If-None-Exist')}: a resource with this "
                    "identifier was stored meanwhile (HTTP 409)")
    return None


def _where(item: Precondition, element: str, header: str) -> str:
    # In a Bundle the precondition is an element of entry.request; otherwise an HTTP header.
    if item.path.startswith("Bundle."):
        return f"{item.path}.{element}"
    return f"{item.path} ({header})"
