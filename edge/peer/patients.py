"""Finding a patient: by identifier, by demographics (deterministic, exactly one certain
match), by logical id; and the :class:`PatientRef` a Patient's records are sealed under."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from edge.crypto.errors import IndexInputError
from edge.store.keys import PatientRef
from edge.store.resources import ResourceStore, ResourceVersion


def patient_ref_of(patient: Mapping[str, Any]) -> PatientRef | None:
    """The identifier the patient's data key is owned by: the first identifier typed MR,
    else the first identifier, the same choice the normalizer makes for PID-3
    (:func:`edge.normalize.segments.pid.patient_id_for`)."""
    identifiers = [i for i in patient.get("identifier", []) or []
                   if isinstance(i, Mapping) and isinstance(i.get("value"), str)]
    if not identifiers:
        return None
    primary = next((i for i in identifiers
                    if any(isinstance(c, Mapping) and c.get("code") == "MR"
                           for c in (i.get("type") or {}).get("coding", []))),
                   identifiers[0])
    return PatientRef(str(primary.get("system", "")), str(primary["value"]))


def by_identifier(conn: sqlite3.Connection, store: ResourceStore,
                  token: str) -> ResourceVersion | None:
    """The one current Patient with identifier ``SYSTEM|VALUE``; None for none or several."""
    try:
        found = store.search(conn, identifier=token, type="Patient")
    except IndexInputError:
        return None
    return found[0] if len(found) == 1 else None


def by_demographics(conn: sqlite3.Connection, store: ResourceStore, *, family: str,
                    given: str, birthdate: str, gender: str) -> ResourceVersion | None:
    """The one current Patient matching all four (normalized as the blind indexes are);
    None for no match or more than one: a patient is released only on one certain match."""
    try:
        found = store.search_patients(conn, family=family, given=given, birthdate=birthdate,
                                      gender=gender)
    except IndexInputError:
        return None
    return found[0] if len(found) == 1 else None


def by_id(conn: sqlite3.Connection, store: ResourceStore, patient_id: str,
          ) -> ResourceVersion | None:
    """The current version of ``Patient/{patient_id}``."""
    return store.read(conn, "Patient", patient_id)


def by_ref(conn: sqlite3.Connection, store: ResourceStore,
           ref: PatientRef) -> ResourceVersion | None:
    """The Patient resource sealed under ``ref`` (None when none, or ambiguous)."""
    found = store.search(conn, patient=ref, type="Patient")
    return found[0] if len(found) == 1 else None
