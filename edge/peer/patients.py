"""Finding a patient: by identifier, by demographics (deterministic, exactly one certain
match), by logical id. (The :class:`PatientRef` a Patient's records are sealed under is
:func:`edge.store.keys.patient_ref_of`'s.)"""

from __future__ import annotations

import sqlite3

from edge.crypto.errors import IndexInputError
from edge.store.keys import PatientRef
from edge.store.resources import ResourceStore, ResourceVersion


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
