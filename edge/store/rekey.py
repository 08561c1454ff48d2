"""Raw messages after normalization: re-keyed to the patient's data key, or dropped.

A raw message is sealed under the inbox key when it arrives, because the patient is not
known yet (issue 5). Once normalization has found the patient, :func:`rekey_inbox_message`
opens the payload and seals it again under the patient's data key with the same AAD
(``inbox_messages``, row id, 1): the AAD binds the row, the key id in the header binds the new
key, and ``inbox_messages.key_id`` names it. From then on the raw message shares the patient's
fate: ``erase`` deletes the inbox rows whose ``key_id`` is the patient's key.

With retention off, the payload is dropped instead: ``payload`` becomes empty,
``payload_format`` 0 and ``key_id`` :data:`DROPPED_KEY_ID`, so readers of the inbox know there is
nothing to open (the PHI-free metadata row stays for the ACK and duplicate detection).

Both run with ``PRAGMA secure_delete = ON`` on the caller's connection: SQLite then overwrites
the bytes of the old payload instead of leaving them in the page's free space, where the old
ciphertext would still open under the inbox key after the patient's key is destroyed
(https://www.sqlite.org/pragma.html#pragma_secure_delete). The setting stays on for that
connection, which is what a store of PHI wants anyway.
"""

from __future__ import annotations

import sqlite3

from edge.crypto.envelope import AAD, FORMAT_V1, reseal
from edge.crypto.errors import IntegrityError
from edge.inbox.schema import TABLE as INBOX
from edge.inbox.store import PAYLOAD_VERSION
from edge.store._tx import write_transaction
from edge.store.errors import StoreError
from edge.store.keys import PatientRef, StoreKeys

DROPPED_KEY_ID = "dropped"
DROPPED_FORMAT = 0


def rekey_inbox_message(conn: sqlite3.Connection, keys: StoreKeys, row_id: int,
                        patient: PatientRef | None, *, retain: bool = True) -> str:
    """Move inbox message ``row_id``'s payload to ``patient``'s key (``retain``), or drop the
    payload (not ``retain``). Returns the payload's key id afterwards (:data:`DROPPED_KEY_ID`
    when dropped). With ``patient`` ``None`` and ``retain`` the payload stays under the inbox
    key. Idempotent. Raises :class:`~edge.crypto.errors.IntegrityError` naming the row when the
    stored payload does not authenticate (it is then left as it is)."""
    conn.execute("PRAGMA secure_delete = ON")
    with write_transaction(conn):
        row = conn.execute(
            f"SELECT key_id, payload, payload_format FROM {INBOX} WHERE id = ?",  # noqa: S608
            (row_id,)).fetchone()
        if row is None:
            raise StoreError(f"inbox message {row_id}: no such row")
        key_id, payload, payload_format = row
        if key_id == DROPPED_KEY_ID:
            return DROPPED_KEY_ID
        aad = AAD(INBOX, str(row_id), PAYLOAD_VERSION)
        if payload_format != FORMAT_V1:
            raise IntegrityError(f"{aad.describe()}: unknown payload format {payload_format}",
                                 table=INBOX, row_id=str(row_id), version=PAYLOAD_VERSION)
        if not retain:
            conn.execute(
                f"UPDATE {INBOX} SET payload = x'', payload_format = ?, key_id = ? "  # noqa: S608
                "WHERE id = ?", (DROPPED_FORMAT, DROPPED_KEY_ID, row_id))
            return DROPPED_KEY_ID
        if patient is None:
            return str(key_id)
        new = keys.for_owner(conn, keys.patient_index(conn, patient))
        if new.key_id == key_id:
            return str(key_id)
        old = keys.get(conn, key_id)
        sealed = reseal(old, new, payload, aad, aad)
        conn.execute(f"UPDATE {INBOX} SET payload = ?, key_id = ? WHERE id = ?",  # noqa: S608
                     (sealed, new.key_id, row_id))
        return new.key_id
