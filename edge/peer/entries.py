"""What the peer API serves for a record version, worked out once and reused: the record
opened and verified, the facts the consent decision needs, and the entry's JSON with its
ledger receipt.

A ``$everything`` for a patient with 200 records used to open all 200 rows (AES-GCM, leaf
hash, JSON parse), run the consent check on each parsed resource, and serialize the whole
Bundle again on every request, though the rows rarely change between two requests. Here:

- :class:`RecordCache`: row → the opened record (its JSON text, type, category codes and
  sensitive labels), reused only while the row's stored columns are *byte for byte* the
  ones that were opened and verified (type, id, version, patient, data key id, sealed body,
  leaf hash) and the row's data key still exists: AES-GCM opening and the checks of
  :meth:`ResourceStore.open_row` are deterministic in those inputs, so a hit returns exactly
  what opening the row again would, and any change to the row (a new version, a tampered
  byte, a row moved between patients, an erased key) is a miss that opens and verifies it
  again, or fails as the store's read fails.
- The patient's *listing* (which rows are current, per type, opened as above) is reused while
  its signature, read in the request's own snapshot by one statement, is unchanged: the
  store's change epoch (raised by triggers on every UPDATE or DELETE of a resource row and on
  a resource moving to another patient: :mod:`edge.store.schema`, migration 41), the
  patient's data key id (erasure destroys it), and per type the count and the highest row
  number of the patient's rows (a new version, a new resource). Every other way for the
  current set to change raises one of those, so a record erased, superseded, moved or
  altered through SQL is never served from here; listing the rows again costs ~0.4 ms and
  200 GIL hand-offs (one per row fetched) per request, the signature one. A listing with a
  row not yet in the log is never reused (its ledger index is set by an UPDATE).
- :class:`EntryCache`: (leaf index, anchored tree size, leaf hash) → the entry's JSON bytes
  (``resource`` and the receipt extension, left open for its ``search`` mode:
  :func:`open_entry`). A receipt for one leaf against one
  anchored size never changes, and the leaf hash pins the exact record version (it hashes
  the salt and the record's canonical JSON). Receipts of the entries missing are built
  together (:func:`ledger_client.receipt.make_receipts`: one read of the log for all their
  audit paths).
- The anchored size a *page* of records was served against: the same records are served
  against it again, though newer checkpoints exist, while every one of them has a receipt
  there (or none anywhere yet). A receipt against an older anchored checkpoint proves the
  record just as well (anchored checkpoints stay on the ledger and are served by
  ``ledger/checkpoints/{size}``), and moving to every new checkpoint rebuilt all 200
  receipts of a page, 5-11 ms of a worker's event loop, at each checkpoint: every few
  seconds under load (``max_pending_leaves``). A page changes checkpoint as a whole when one
  of its records is covered only by a newer one, so a Bundle's receipts always share one
  checkpoint (a verifier fetches one per answer).

Both caches hold decrypted records and salts, as secret as the records: they are bounded
(bytes), live in the daemon's memory only (never on disk, never logged), and hold nothing
the process's cached data keys could not open anyway. When the change epoch moves (an
erasure raises it), the next request drops every cached record whose row is gone, and the
entries and consent rules made of them (:meth:`RecordCache.forget_vanished`).

The consent *decision* is never cached: it is made per request, from the patient's current
Consent versions as that request's snapshot lists them (the listing above, its signature read
by the same statement as the clinical types'), and applied per record from the cached facts
(:meth:`AccessDecision.releases`). What is reused is only the parse of one Consent version
into its rules (:class:`ConsentRules`, by leaf hash: a function of the version's bytes), so a
revocation, a new grant or a consent changed through SQL counts from the next request as
before; reading, opening and parsing the consents was ~7% of a worker's samples.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from edge.crypto.envelope import AAD
from edge.crypto.errors import IntegrityError
from edge.crypto.keys import KeyPurpose
from edge.peer.codes import RECEIPT_EXTENSION, RECEIPT_PENDING_EXTENSION
from edge.peer.consent import provisions_of
from edge.peer.decision import Provision, categories_of, sensitive_labels
from edge.store.keys import KeyRow
from edge.store.resources import (
    BASE_COLUMNS,
    CURRENT_ONLY,
    KEY_ROW_BY_ID,
    ROW_FROM,
    ResourceStore,
    ResourceVersion,
)
from edge.store.schema import CHANGE_EPOCH, DATA_KEYS, RESOURCES
from ledger_client.anchorer import LocalAnchor
from ledger_client.errors import LedgerError
from ledger_client.log import MerkleLog
from ledger_client.receipt import Receipt, make_receipt, make_receipts

log = logging.getLogger(__name__)

DEFAULT_RECORD_BUDGET: Final = 64 << 20  # bytes of bodies and JSON kept
DEFAULT_ENTRY_BUDGET: Final = 64 << 20  # bytes of entry JSON kept
DEFAULT_LISTING_BUDGET: Final = 64 << 20  # bytes of the JSON of the listed records
DEFAULT_RULES_BUDGET: Final = 4 << 20  # bytes of the JSON of the consents parsed
_OVERHEAD = 256  # per item: the objects around the bytes
_ROWS_PER_STATEMENT = 500  # far below SQLite's 32766 parameters


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True, repr=False)
class Record:
    """One current record version, opened and verified. ``json`` is the resource as served
    (compact JSON); ``categories`` and ``labels`` are what the consent decision reads
    (:func:`edge.peer.decision.categories_of`, :func:`~edge.peer.decision.sensitive_labels`).
    ``repr`` shows no content."""

    row: int
    type: str
    id: str
    version: int
    json: bytes
    categories: frozenset[str]
    labels: frozenset[str]
    salt: bytes
    leaf_hash: bytes
    ledger_index: int | None

    def __repr__(self) -> str:
        return f"Record({self.type}/{self.id}/_history/{self.version}, row={self.row})"

    @classmethod
    def of(cls, version: ResourceVersion) -> Record:
        """From a version the store has opened and verified."""
        resource = version.resource
        return cls(version.row, version.type, version.id, version.version, _compact(resource),
                   categories_of(resource), sensitive_labels(resource), version.salt,
                   version.leaf_hash, version.ledger_index)


# The stored columns an opened record is a function of (BASE_COLUMNS positions 1-5, 7, 8):
# type, id, version, patient, key id, sealed body, leaf hash.
_Identity = tuple[str, str, int, bytes | None, str, bytes, bytes]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Bounded(Generic[K, V]):
    """Values by key, at most ``budget`` bytes by their callers' ``cost``, dropping the
    oldest first. Thread-safe: writes under a lock; a read is one dict lookup."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._items: dict[K, tuple[V, int]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def _get(self, key: K) -> V | None:
        item = self._items.get(key)
        return None if item is None else item[0]

    def _put(self, key: K, value: V, cost: int) -> None:
        cost += _OVERHEAD
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._used -= old[1]
            while self._items and self._used + cost > self._budget:
                oldest = next(iter(self._items))
                self._used -= self._items.pop(oldest)[1]
            if cost <= self._budget:
                self._items[key] = (value, cost)
                self._used += cost

    def _drop(self, doomed: Callable[[K, V], bool]) -> list[V]:
        """Remove the items for which ``doomed(key, value)``; returns their values."""
        with self._lock:
            gone = [k for k, (v, _) in self._items.items() if doomed(k, v)]
            values = []
            for key in gone:
                value, cost = self._items.pop(key)
                self._used -= cost
                values.append(value)
            return values


def _signature_sql(types: int) -> str:
    """One row: (change epoch, the patient's data key id, ``type count max-row`` per type).
    Parameters: key purpose, key owner (hex), the patient's blind key, the types."""
    marks = ",".join("?" * types)
    return (f"SELECT (SELECT epoch FROM {CHANGE_EPOCH} WHERE id = 1), "  # noqa: S608
            f"(SELECT key_id FROM {DATA_KEYS} WHERE purpose = ? AND owner = ?), "
            "(SELECT group_concat(type || ' ' || n || ' ' || last, ',') FROM "
            f"(SELECT type, count(*) AS n, max(row) AS last FROM {RESOURCES} "
            f"WHERE patient = ? AND type IN ({marks}) GROUP BY type))")


_Listing = tuple[tuple[Any, ...], tuple[Record, ...]]  # (signature, records)


class RecordCache(_Bounded[int, tuple[_Identity, Record]]):
    """Opened records by row number, and patients' listings (see the module docstring for
    when each is reused), bounded by ``budget`` bytes of sealed bodies and JSON and
    ``listing_budget`` bytes of the listed records' JSON."""

    def __init__(self, budget: int = DEFAULT_RECORD_BUDGET,
                 listing_budget: int = DEFAULT_LISTING_BUDGET, *,
                 on_forget: Callable[[set[bytes]], None] = lambda leaves: None) -> None:
        super().__init__(budget)
        self._listings: _Bounded[tuple[bytes, tuple[str, ...]], _Listing] = _Bounded(
            listing_budget)
        self._epoch: int | None = None
        self._on_forget = on_forget
        self.hits = 0
        self.misses = 0
        self.listings_reused = 0

    def get(self, row: int, identity: _Identity) -> Record | None:
        item = self._get(row)
        if item is None or item[0] != identity:
            return None
        return item[1]

    def put(self, identity: _Identity, record: Record) -> None:
        self._put(record.row, (identity, record), len(identity[5]) + len(record.json))

    def current(self, conn: sqlite3.Connection, store: ResourceStore, owner: bytes,
                types: Sequence[str]) -> list[Record]:
        """The patient's current versions of ``types`` (``owner``: the patient's blind key,
        as in ``resources.patient``), grouped in the order of ``types``, by id within a
        type: what ``store.search(patient=..., type=t)`` for each ``t`` returns, opened and
        verified by :meth:`ResourceStore.open_row` unless cached. Raises IntegrityError as
        the store's read does. Call it inside a read snapshot."""
        wanted = tuple(types)
        signature = tuple(conn.execute(_signature_sql(len(wanted)), (
            KeyPurpose.PATIENT.value, owner.hex(), owner, *wanted)).fetchone())
        if signature[0] != self._epoch:
            self.forget_vanished(conn)
            self._epoch = signature[0]
        listed = self._listings._get((owner, wanted))
        if listed is not None and listed[0] == signature:
            self.listings_reused += 1
            return list(listed[1])
        found = self._list(conn, store, owner, wanted)
        if signature[1] is not None and all(r.ledger_index is not None for r in found):
            self._listings._put((owner, wanted), (signature, tuple(found)),
                                sum(len(r.json) + _OVERHEAD for r in found))
        return found

    def forget_vanished(self, conn: sqlite3.Connection) -> int:
        """Drop every cached record whose row no longer exists (an erasure, made by this
        daemon or by ``hie-edge erase`` in another process), the listings holding one, and
        (through ``on_forget``, by leaf hash) what other caches made of them, so decrypted
        records of an erased patient do not stay in memory until evicted. Run when the
        store's change epoch moves (erasure raises it); returns how many records went."""
        rows = list(self._items)
        existing: set[int] = set()
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            existing.update(r for (r,) in conn.execute(
                f"SELECT row FROM {RESOURCES} WHERE row IN "  # noqa: S608
                f"({','.join('?' * len(chunk))})", chunk))
        vanished = set(rows) - existing
        if not vanished:
            return 0
        dropped = self._drop(lambda row, item: row in vanished)
        self._listings._drop(lambda key, listing: any(r.row in vanished for r in listing[1]))
        self._on_forget({record.leaf_hash for _, record in dropped})
        return len(dropped)

    def _list(self, conn: sqlite3.Connection, store: ResourceStore, owner: bytes,
              types: Sequence[str]) -> list[Record]:
        found: list[Record] = []
        for rtype in types:
            # One statement per type, as the store's search: the (patient, type, id) index
            # finds them without reading the patient's other types (AuditEvents above all).
            rows = conn.execute(
                f"SELECT {BASE_COLUMNS}, k.key_id FROM {ROW_FROM} "  # noqa: S608
                f"WHERE {CURRENT_ONLY} AND r.patient = ? AND r.type = ? ORDER BY r.id",
                (owner, rtype)).fetchall()
            for r in rows:
                found.append(self._open(conn, store, r))
        return found

    def _open(self, conn: sqlite3.Connection, store: ResourceStore,
              r: Sequence[Any]) -> Record:
        identity: _Identity = (r[1], r[2], r[3], r[4], r[5], bytes(r[7]), bytes(r[8]))
        # r[10]: the row's data key still exists (the database decides, not a cache).
        cached = self.get(r[0], identity) if r[10] is not None else None
        if cached is not None:
            self.hits += 1
            if cached.ledger_index != r[9]:  # written after the leaf was appended
                cached = Record(cached.row, cached.type, cached.id, cached.version,
                                cached.json, cached.categories, cached.labels, cached.salt,
                                cached.leaf_hash, r[9])
                self.put(identity, cached)
            return cached
        self.misses += 1
        if r[10] is None:
            # Erasure deletes a key and its rows together: a row whose key is gone is damage,
            # never served, even while this process still holds the key's material.
            aad = AAD(RESOURCES, f"{r[1]}/{r[2]}", r[3])
            problem = f"its data key {r[5]} does not exist (erased?)"
            raise IntegrityError(f"{aad.describe()} (row {r[0]}): {problem}", table=RESOURCES,
                                 row_id=aad.row_id, version=r[3], key_id=r[5], row=r[0],
                                 problem=problem)
        key_row: KeyRow | None = None
        if store.keys.cached(r[5]) is None:
            key_row = conn.execute(KEY_ROW_BY_ID, (r[5],)).fetchone()
        record = Record.of(store.open_row(r[:10], key_row))
        self.put(identity, record)
        return record


class ConsentRules(_Bounded[bytes, tuple[Provision, ...]]):
    """The rules of Consent versions (:func:`edge.peer.consent.provisions_of`), by the
    version's leaf hash, which pins its exact JSON (it hashes the salt and the canonical
    JSON), bounded by ``budget`` bytes of that JSON."""

    def __init__(self, budget: int = DEFAULT_RULES_BUDGET) -> None:
        super().__init__(budget)

    def active(self, consents: Iterable[Record]) -> list[Provision]:
        """Every rule of the active consents among ``consents`` (the patient's current
        Consent versions, opened), as :func:`edge.peer.consent.active_provisions` reads them
        from the store. Raises ConsentInputError as ``provisions_of`` does (not cached)."""
        rules: list[Provision] = []
        for consent in consents:
            parsed = self._get(consent.leaf_hash)
            if parsed is None:
                parsed = tuple(provisions_of(json.loads(consent.json)))
                self._put(consent.leaf_hash, parsed, len(consent.json))
            rules += parsed
        return rules

    def forget_leaves(self, leaves: set[bytes]) -> None:
        """Drop the rules of these leaf hashes (their Consent versions were erased)."""
        self._drop(lambda leaf, rules: leaf in leaves)


class EntryCache(_Bounded[tuple[int, int, bytes], bytes]):
    """Entry JSON bytes by (leaf index, anchored tree size, leaf hash), bounded by ``budget``
    bytes."""

    def __init__(self, budget: int = DEFAULT_ENTRY_BUDGET) -> None:
        super().__init__(budget)
        # A page's leaf hashes → the anchored size it was last served against.
        self._pins: _Bounded[tuple[bytes, ...], int] = _Bounded(budget // 16)

    def get(self, key: tuple[int, int, bytes]) -> bytes | None:
        return self._get(key)

    def put(self, key: tuple[int, int, bytes], entry: bytes) -> None:
        self._put(key, entry, len(entry))

    def forget_leaves(self, leaves: set[bytes]) -> None:
        """Drop the entries of these leaf hashes (their records were erased)."""
        self._drop(lambda key, entry: key[2] in leaves)
        self._pins._drop(lambda page, size: not leaves.isdisjoint(page))

    def entries(self, records: Sequence[Record], anchored: LocalAnchor | None,
                conn: sqlite3.Connection) -> list[bytes]:
        """Each record's Bundle entry (JSON bytes), in order: with its receipt against
        ``anchored``, or marked ``not-anchored-yet`` when its leaf is newer than that
        checkpoint (or when nothing is anchored), or ``unavailable`` when the log on
        ``conn`` cannot give its proof. The page is served against the anchored size it was
        served against before while that still covers it (module docstring)."""
        size = anchored.checkpoint.tree_size if anchored is not None else 0
        page = tuple(r.leaf_hash for r in records)
        pinned = self._pins._get(page)
        if pinned is not None and pinned < size:
            served = self._served_at(records, pinned, size)
            if served is not None:
                return served
        out: list[bytes | None] = []
        missing: list[int] = []
        for i, record in enumerate(records):
            index = record.ledger_index
            if anchored is None or index is None or index >= size:
                out.append(open_entry(record.json, pending="not-anchored-yet"))
                continue
            hit = self.get((index, size, record.leaf_hash))
            out.append(hit)
            if hit is None:
                missing.append(i)
        if missing:
            assert anchored is not None
            for i, receipt in zip(missing, _receipts(MerkleLog(conn), anchored,
                                                     [records[i] for i in missing]),
                                  strict=True):
                record = records[i]
                if receipt is None:
                    out[i] = open_entry(record.json, pending="unavailable")
                    continue
                text = open_entry(record.json, receipt=receipt)
                assert record.ledger_index is not None
                self.put((record.ledger_index, size, record.leaf_hash), text)
                out[i] = text
        if size:
            # Per record: the tuple's reference and the 32-byte hash object it keeps alive.
            self._pins._put(page, size, 80 * len(page))
        return [e for e in out if e is not None]

    def _served_at(self, records: Sequence[Record], pinned: int,
                   latest: int) -> list[bytes] | None:
        """The page's entries against the anchored size ``pinned``, all from the cache; None
        when one is not cached there or a record is covered by ``latest`` only."""
        out = []
        for record in records:
            index = record.ledger_index
            if index is None or index >= pinned:
                if index is not None and index < latest:
                    return None
                out.append(open_entry(record.json, pending="not-anchored-yet"))
                continue
            hit = self.get((index, pinned, record.leaf_hash))
            if hit is None:
                return None
            out.append(hit)
        return out


def _receipts(merkle: MerkleLog, anchored: LocalAnchor,
              records: Sequence[Record]) -> list[Receipt | None]:
    leaves = [(r.ledger_index, r.salt) for r in records]
    try:
        return list(make_receipts(merkle, anchored, leaves))  # type: ignore[arg-type]
    except LedgerError:
        pass
    # Some leaf has no proof (a damaged log): find which, one at a time, serve the others.
    out: list[Receipt | None] = []
    for index, salt in leaves:
        assert index is not None
        try:
            out.append(make_receipt(merkle, anchored, index, salt))
        except LedgerError:
            log.error("receipt not available", extra={"fields": {"leaf_index": index}})
            out.append(None)
    return out


def open_entry(resource: bytes, *, receipt: Receipt | None = None,
               pending: str | None = None) -> bytes:
    """A Bundle entry as compact JSON bytes left open before its ``search`` member, which
    :func:`bundle_json` writes: ``{"resource": ..., "extension": [...]`` from the resource's
    JSON, the receipt as ``valueString`` (its own compact JSON, docs/peer.md), or the pending
    extension with the reason code. Open, so that one entry (cached once) serves as a match
    and as an include at no cost per entry."""
    extension: dict[str, str]
    if receipt is not None:
        text = json.dumps(receipt.to_json(), separators=(",", ":"))
        extension = {"url": RECEIPT_EXTENSION, "valueString": text}
    else:
        extension = {"url": RECEIPT_PENDING_EXTENSION, "valueCode": pending or "unavailable"}
    return b"".join((b'{"resource":', resource, b',"extension":[', _compact(extension), b"]"))


_AS_MATCH: Final = b',"search":{"mode":"match"}}'
_AS_INCLUDE: Final = b',"search":{"mode":"include"}}'


def bundle_json(head: dict[str, Any], entries: Sequence[bytes], *,
                matches: int | None = None) -> bytes:
    """A Bundle's JSON bytes: the members of ``head`` (compact, in their order), then
    ``entry`` from each :func:`open_entry`, closed with its search mode without parsing or
    re-encoding it: ``match`` for the first ``matches`` (all by default), ``include`` for
    the rest (returned for referring to a match: ``_revinclude``). Each mode's entries are
    closed by one ``bytes.join`` (its separator), never one by one."""
    split = len(entries) if matches is None else matches
    # One join of the parts, no joined group concatenated again: every extra bytes object
    # the size of the body (300 KB for 200 records) cost ~0.25 ms per request, measured
    # in-process with a ``_revinclude`` page (fresh large allocations, not the copy itself).
    parts = [_compact(head)[:-1], b',"entry":[']
    for group, end in ((entries[:split], _AS_MATCH), (entries[split:], _AS_INCLUDE)):
        if group:
            parts += (b"," if len(parts) > 2 else b"", (end + b",").join(group), end)
    parts.append(b"]}")
    return b"".join(parts)
