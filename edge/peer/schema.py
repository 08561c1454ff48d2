"""The peer package's tables (migrations 40 and 43; the registry is in
:mod:`edge.storage.database`).

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


@migration(43, "peer: jwt ids keyed by the id itself (WITHOUT ROWID)")
def _jti_without_rowid(db: sqlite_utils.Database) -> None:
    # Every peer request inserts its JWT id. As a rowid table with a TEXT primary key, each
    # insert wrote three B-trees: the table, its automatic unique index on jti, and the
    # expiry index; keyed by the id itself (https://www.sqlite.org/withoutrowid.html), two.
    # Counted in the WAL of the peer service's audit transactions: 3 pages of peer_jti's
    # B-trees rewritten per transaction before, 2 after (of ~23 pages in all).
    db.execute(f"CREATE TABLE {JTI}_new (jti TEXT PRIMARY KEY, facility TEXT NOT NULL, "
               "expires_ms INTEGER NOT NULL) WITHOUT ROWID")
    db.execute(f"INSERT INTO {JTI}_new (jti, facility, expires_ms) "  # noqa: S608
               f"SELECT jti, facility, expires_ms FROM {JTI}")
    db.execute(f"DROP TABLE {JTI}")  # and its indexes
    db.execute(f"ALTER TABLE {JTI}_new RENAME TO {JTI}")
    db.execute(f"CREATE INDEX peer_jti_by_expiry ON {JTI} (expires_ms)")
