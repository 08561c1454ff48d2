"""The FHIR API's tables (migration 30; the registry is in :mod:`edge.storage.database`).

``fhir_source_checkpoints``: how far each upstream source has been read, per resource type
(``*`` for Bulk Data ``$export``): the upstream ``meta.lastUpdated`` (or the export's
``transactionTime``) up to which everything is in our inbox. A poll resumes from it after a
restart. No PHI: source names, type names and instants.

Also an index on ``resources (type, last_updated)``: searches by ``_lastUpdated`` alone (what an
incremental poller downstream of us asks) and type scans page through it in order without
opening a record.
"""

from __future__ import annotations

import sqlite_utils

from edge.storage.database import migration
from edge.store.schema import RESOURCES

CHECKPOINTS = "fhir_source_checkpoints"
BULK = "*"  # the resource_type of a Bulk Data export's checkpoint


@migration(30, "fhir source checkpoints")
def _create_checkpoints(db: sqlite_utils.Database) -> None:
    db.table(CHECKPOINTS).create(
        {"source": str, "resource_type": str, "last_updated": str, "updated_at": str},
        pk=("source", "resource_type"), not_null={"last_updated", "updated_at"},
    )
    db.execute(f"CREATE INDEX resources_by_type_updated ON {RESOURCES} (type, last_updated)")
