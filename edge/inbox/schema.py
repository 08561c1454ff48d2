"""Inbox tables.

``payload`` holds the raw message exactly as received, sealed (AES-256-GCM, see
``edge.crypto``) with ``key_id`` naming the data key and ``payload_format`` its envelope
version, so re-keying to a patient's key after normalization, or a new envelope format, is an
UPDATE of those columns and never a table change. Only PHI-free metadata is in clear: MSH-3/4
(sending system and facility), MSH-9, MSH-10, version, sizes, states and reasons.
"""

from __future__ import annotations

import sqlite_utils

from edge.storage.database import migration

TABLE = "inbox_messages"


@migration(1, "inbox")
def _create_inbox(db: sqlite_utils.Database) -> None:
    db.table(TABLE).create(
        {
            "id": int,
            "received_at": str,  # UTC, RFC 3339 with microseconds
            "listener": str,
            "peer": str,  # address:port of the sender
            "sending_application": str,  # MSH-3
            "sending_facility": str,  # MSH-4
            "message_type": str,  # MSH-9 as sent (code^event^structure)
            "control_id": str,  # MSH-10
            "version": str,  # MSH-12.1
            "codec": str,  # charset used to read the message (MSH-18 or fallback)
            "size": int,
            "fingerprint": bytes,  # keyed hash of the raw bytes: duplicate detection
            "payload": bytes,
            "payload_format": int,
            "key_id": str,
            "state": str,  # received | processed | dead-letter
            "reason": str,  # why a message is dead-lettered (PHI-free)
            "ack_code": str,
            "ack": bytes,  # the ACK we sent, re-sent verbatim to a duplicate
            "flags": str,  # e.g. control-id-reused
            "batch_control_id": str,  # BHS-11 when the message came in a batch
            "attempts": int,
            "updated_at": str,
        },
        pk="id",
        not_null={"received_at", "listener", "payload", "payload_format", "key_id", "state",
                  "size", "attempts"},
        defaults={"attempts": 0, "flags": ""},
    )
    db.table(TABLE).create_index(["sending_application", "sending_facility", "control_id"],
                           index_name="inbox_by_sender_control_id")
    db.table(TABLE).create_index(["state", "id"], index_name="inbox_by_state")
