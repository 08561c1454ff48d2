"""Errors of ``edge.store``.

A stored row that fails verification raises :class:`edge.crypto.errors.IntegrityError` (re-exported
here): one type for "the bytes on disk are not what we wrote", whichever layer noticed. Messages
name the table, the row (``Type/id``, the SQLite row number) and the version, never content.
"""

from __future__ import annotations

from edge.crypto.errors import IntegrityError, UnknownKeyError
from edge.errors import EdgeError, Fault

__all__ = [
    "ErasureError",
    "IntegrityError",
    "ResourceInputError",
    "StoreError",
    "UnknownKeyError",
]


class StoreError(EdgeError):
    """Root of the errors raised by ``edge.store`` itself."""


class ResourceInputError(StoreError):
    """A resource handed to :meth:`~edge.store.resources.ResourceStore.put` cannot be stored:
    no ``resourceType``/``id``, an id that is not a FHIR id, a value with no RFC 8785 form, a
    ``gender`` that is not an AdministrativeGender code. The message names the element path
    (``Patient.birthDate``), never its value."""

    fault: Fault = "internal"  # the normalizer produced it; a sender cannot cause it directly

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class ErasureError(StoreError):
    """An erasure request cannot be carried out as asked (the identifier names several
    patients, or erasure was called inside an open transaction)."""

    fault: Fault = "config"
