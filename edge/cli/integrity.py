"""The operator's line for a stored row that failed verification (a flipped byte, a swapped
or replayed row, a key that no longer unwraps): where it is, and where to look next."""

from __future__ import annotations

from edge.crypto.errors import IntegrityError


def integrity_message(exc: IntegrityError) -> str:
    """Where the row is, as :meth:`IntegrityError.log_fields` gives it: table, row number,
    type, version, key id and the failed check; never the message, whose logical id may be a
    client's choice that names the patient (``PUT Patient/{MRN}``)."""
    where = " ".join(f"{name} {value}" for name, value in exc.log_fields().items()
                     if value is not None and name != "problem")
    problem = f": {exc.problem}" if exc.problem else ""
    return (f"a stored record failed verification ({where}{problem}); "
            "`hie-edge verify --all` lists every damaged row")
