"""The peer package's tables (migration 40; the registry is in :mod:`edge.storage.database`).

``peer_jti``: request-context JWT ids seen, until they expire (replay protection that
survives a restart). ``peer_notifications``: the webhook outbox; a notice is committed in
the same transaction as the AuditEvent of the disclosure it reports, and holds no PHI (see
:mod:`edge.peer.notifications`).
"""

from __future__ import annotations

import sqlite_utils

from edge.storage.database import migration

JTI = "peer_jti"
NOTIFICATIONS = "peer_notifications"


@migration(40, "peer: jwt ids and notification outbox")
def _create_peer_tables(db: sqlite_utils.Database) -> None:
    db.table(JTI).create({"jti": str, "facility": str, "expires_ms": int}, pk="jti",
                         not_null={"facility", "expires_ms"})
    db.table(JTI).create_index(["expires_ms"], index_name="peer_jti_by_expiry")
    db.table(NOTIFICATIONS).create(
        {"id": int, "created_ms": int, "body": str, "state": str, "attempts": int,
         "next_attempt_ms": int, "last_error": str},
        pk="id", not_null={"created_ms", "body", "state", "attempts", "next_attempt_ms"},
    )
    db.execute(f"CREATE INDEX peer_notifications_due ON {NOTIFICATIONS} (next_attempt_ms) "
               "WHERE state = 'pending'")
