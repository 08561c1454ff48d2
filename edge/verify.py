"""``hie-edge verify``: everything we stored is what we anchored (issue 6).

For each resource version: open and authenticate it (AES-GCM, bound to its row), recompute
its leaf from the decrypted record and its salt — SHA-256(0x00 ‖ salt ‖ RFC 8785 JSON) — and
check that leaf against the stored hash, against the Merkle log at its index and, once the
log has been anchored past it, through an RFC 9162 inclusion proof to the root the ledger
backend holds for that tree size. Then the facility's anchored checkpoints are checked
against the log (each root reproducible, each consistent with the next, RFC 9162 2.1.4) and
against the backend.

Findings name rows, resource ids (deterministic UUIDs, never PHI), tree sizes and kinds;
never content. A record newer than the last anchor is *pending*, not a failure.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from edge.crypto.errors import IntegrityError, UnknownKeyError
from edge.store.keys import StoreKeys
from edge.store.resources import ResourceStore
from edge.store.schema import RESOURCES
from ledger_client.backends.base import LedgerBackend
from ledger_client.errors import LedgerError
from ledger_client.leaf import LeafError, record_leaf
from ledger_client.log import MerkleLog
from ledger_client.merkle import root_from_inclusion_proof
from ledger_client.receipt import verify_anchor_chain


@dataclass(frozen=True, slots=True)
class Finding:
    what: str  # "Patient/<id>/_history/2 (row 17)" or "checkpoint 120"
    problem: str  # integrity | leaf | log-leaf | not-in-log | inclusion | root | consistency ...


@dataclass
class VerifyReport:
    checked: int = 0
    verified: int = 0
    pending: int = 0
    anchored_size: int = 0
    log_size: int = 0
    anchors_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "checked": self.checked, "verified": self.verified,
                "pending": self.pending, "log_size": self.log_size,
                "anchored_size": self.anchored_size, "anchors_checked": self.anchors_checked,
                "findings": [{"what": f.what, "problem": f.problem} for f in self.findings]}


def rows_to_check(conn: sqlite3.Connection, resource: str | None) -> list[int]:
    """Every stored version, or every version of ``Type/id``."""
    if resource is None:
        return [r for (r,) in conn.execute(f"SELECT row FROM {RESOURCES} ORDER BY row")]  # noqa: S608
    rtype, _, rid = resource.partition("/")
    return [r for (r,) in conn.execute(
        f"SELECT row FROM {RESOURCES} WHERE type = ? AND id = ? ORDER BY version",  # noqa: S608
        (rtype, rid))]


async def verify(conn: sqlite3.Connection, keys: StoreKeys, backend: LedgerBackend,
                 facility: str, rows: list[int], *,
                 progress: Callable[[Iterator[int]], Iterator[int]] = iter) -> VerifyReport:
    report = VerifyReport()
    log = MerkleLog(conn)
    store = ResourceStore(keys)
    report.log_size = log.size
    anchored = await backend.latest(facility)
    anchored_size = anchored.tree_size if anchored else 0
    report.anchored_size = anchored_size
    anchored_root = anchored.root_hash if anchored else b""
    for row in progress(iter(rows)):
        report.checked += 1
        problem = _check_row(conn, store, log, row, anchored_size, anchored_root, report)
        if problem is not None:
            report.findings.append(problem)
    await _check_anchors(conn, backend, facility, log, report)
    return report


def _check_row(conn: sqlite3.Connection, store: ResourceStore, log: MerkleLog, row: int,
               anchored_size: int, anchored_root: bytes, report: VerifyReport) -> Finding | None:
    try:
        version = store.verify_row(conn, row)
    except (IntegrityError, UnknownKeyError):
        return Finding(f"row {row}", "integrity")
    except sqlite3.DatabaseError:
        # A page SQLite cannot parse (a torn write, a bad disk): `PRAGMA integrity_check`
        # names it; the record behind it cannot be read, so it cannot be vouched for.
        return Finding(f"row {row}", "database-damaged")
    what = f"{version.type}/{version.id}/_history/{version.version} (row {row})"
    try:
        leaf = record_leaf(version.resource, version.salt)
    except LeafError:
        return Finding(what, "leaf")
    if leaf != version.leaf_hash:
        return Finding(what, "leaf")
    index = version.ledger_index
    if index is None or index >= report.log_size:
        return Finding(what, "not-in-log")
    if log.leaf(index) != leaf:
        return Finding(what, "log-leaf")
    if index >= anchored_size:
        report.pending += 1
        return None
    try:
        proof = log.inclusion_proof(index, anchored_size)
        root = root_from_inclusion_proof(leaf, index, anchored_size, proof)
    except LedgerError:
        return Finding(what, "inclusion")
    if root != anchored_root:
        return Finding(what, "inclusion")
    report.verified += 1
    return None


async def _check_anchors(conn: sqlite3.Connection, backend: LedgerBackend, facility: str,
                         log: MerkleLog, report: VerifyReport) -> None:
    """Every checkpoint we anchored must be reproducible from the log, consistent with the
    next one, and be what the backend holds."""
    rows = conn.execute(
        "SELECT tree_size, root_hash FROM ledger_checkpoints WHERE state = 'anchored' "
        "ORDER BY tree_size").fetchall()
    anchors = [(int(size), bytes(root)) for size, root in rows]
    report.anchors_checked = len(anchors)
    for size, problem in verify_anchor_chain(anchors, log):
        report.findings.append(Finding(f"checkpoint {size}", problem))
    for size, root in anchors:
        held = await backend.get(facility, size)
        if held is None or held.root_hash != root:
            report.findings.append(Finding(f"checkpoint {size}", "not-on-ledger"))
