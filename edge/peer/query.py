"""``hie-edge peer query``: ask members for a patient's records, concurrently, and check
every record against the answering facility's anchored log.

For each member asked: discovery with the records (``Patient?identifier=&_revinclude=*``)
page by page, or ``Patient/{id}/$everything`` when the first page holds the match alone;
each request with a fresh request-context JWT (a new ``jti``), each answer from a server
whose certificate must be that member's (directory fingerprint or subject). Every
entry's receipt is checked with :func:`ledger_client.receipt.verify_receipt` against a root
*we* obtain, never the one in the receipt:

- ``local`` backend: the member serves its signed checkpoint note of that tree size
  (``ledger/checkpoints/{size}``); we verify the Ed25519 signature with the member's key from
  our directory (:func:`ledger_client.checkpoint.open_checkpoint`) and take the root from the
  note. Trust rests on the member's key: a member could sign a false checkpoint, which the
  ``evm`` backend rules out.
- ``evm`` backend: the root anchored on the consortium chain for (member, tree size).

Reported per member: status, records found, records verified, and each failing record's
``Type/id`` with the problems (``leaf``, ``proof``, ``receipt-root``, ``anchored-root``,
``not-anchored``, ``no-receipt``, ``not-anchored-yet``, ``wrong-facility``,
``anchor-unavailable``, ``bad-receipt``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.peer.client import PeerClient, PeerUnavailable
from edge.peer.codes import RECEIPT_EXTENSION, RECEIPT_PENDING_EXTENSION
from edge.peer.context import issue_context
from edge.peer.directory import Peer
from ledger_client.backends.base import LedgerBackend
from ledger_client.checkpoint import open_checkpoint
from ledger_client.errors import BackendUnavailable, CheckpointError, LedgerError
from ledger_client.receipt import Receipt, verify_receipt

Status = Literal["ok", "not-found", "denied", "refused", "error", "unavailable", "timeout"]
log = logging.getLogger(__name__)

# Entries asked for per page: the most our peer API serves in one (its
# _MAX_COUNT). Every page is a WAN round trip, a JWT, a consent decision and its AuditEvents
# at the member; in an emergency the round trips are what the clinician waits for. A member
# that pages smaller answers with `next` links, which are followed.
PAGE_SIZE = 1000
_MAX_PAGES = 1000


@dataclass(frozen=True, slots=True)
class EntryFailure:
    resource: str  # Type/id (opaque ids; no content)
    problems: tuple[str, ...]


@dataclass(slots=True)
class PeerOutcome:
    """What one member answered. ``records`` holds the verified resources (PHI: printed only
    when asked for)."""

    peer: str
    status: Status = "ok"
    found: int = 0
    verified: int = 0
    failures: list[EntryFailure] = field(default_factory=list)
    detail: str = ""
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_json(self, *, records: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "peer": self.peer, "status": self.status, "found": self.found,
            "verified": self.verified, "detail": self.detail,
            "failures": [{"resource": f.resource, "problems": list(f.problems)}
                         for f in self.failures]}
        if records:
            out["records"] = self.records
        return out


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """Who asks and why (the request context), and for which patient."""

    patient: str = field(repr=False)  # SYSTEM|VALUE
    purpose: str
    practitioner: str
    role: str
    reason: str = field(default="", repr=False)
    page_size: int = PAGE_SIZE  # each page's _count


@dataclass(frozen=True, slots=True)
class Credentials:
    """Our facility's id, signing key and certificate thumbprint (for the JWTs)."""

    facility: str
    key: Ed25519PrivateKey = field(repr=False)
    thumbprint: str
    lifetime_s: int = 60


class RootSource(Protocol):
    async def root(self, peer: Peer, tree_size: int, client: PeerClient) -> bytes | None:
        """The root ``peer`` anchored at ``tree_size``, obtained independently; None when
        there is none. Raises LedgerError when the anchor cannot be obtained (that record is
        ``anchor-unavailable``) and PeerUnavailable when the member itself cannot be asked
        (its whole answer is then incomplete)."""


class CheckpointRoots:
    """``local`` backend: the member's signed checkpoint note, verified with its directory
    key. Cached per (member, size): an anchored checkpoint never changes."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], bytes | None] = {}

    async def root(self, peer: Peer, tree_size: int, client: PeerClient) -> bytes | None:
        key = (peer.id, tree_size)
        if key not in self._cache:
            reply = await client.get(f"{peer.url}/ledger/checkpoints/{tree_size}",
                                     accept="text/plain")
            if not peer.matches(reply.server_cert or b""):
                raise PeerUnavailable("server certificate is not this member's")
            if reply.status == 404:
                self._cache[key] = None
            elif reply.status != 200:
                # The member answered but cannot show its checkpoint: the records' anchors
                # are unavailable (per record), the member itself is not.
                raise BackendUnavailable(f"checkpoint http-{reply.status}")
            else:
                try:
                    text = reply.body.decode("utf-8")
                except UnicodeDecodeError:
                    raise CheckpointError("checkpoint note is not UTF-8") from None
                checkpoint = open_checkpoint(text, peer.verifier)
                self._cache[key] = (checkpoint.root_hash
                                    if checkpoint.tree_size == tree_size else None)
        return self._cache[key]


class LedgerRoots:
    """``evm`` backend: the root on the consortium chain."""

    def __init__(self, backend: LedgerBackend) -> None:
        self._backend = backend

    async def root(self, peer: Peer, tree_size: int, client: PeerClient) -> bytes | None:
        anchored = await self._backend.get(peer.id, tree_size)
        return anchored.root_hash if anchored is not None else None


async def _verify_entry(entry: Mapping[str, Any], peer: Peer, client: PeerClient,
                        roots: RootSource) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """Check one entry's receipt. Raises :class:`PeerUnavailable` only when the member
    itself cannot be asked for its checkpoint (it went away: the whole answer is then
    incomplete, not this one record unverifiable)."""
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        return None, ("no-resource",)
    extensions = {e.get("url"): e for e in _dicts(entry.get("extension"))}
    if RECEIPT_PENDING_EXTENSION in extensions:
        return resource, ("not-anchored-yet",)
    ext = extensions.get(RECEIPT_EXTENSION)
    if ext is None:
        return resource, ("no-receipt",)
    try:
        receipt = Receipt.from_json(json.loads(str(ext.get("valueString", ""))))
    except (LedgerError, ValueError):
        return resource, ("bad-receipt",)
    if receipt.facility != peer.id:
        return resource, ("wrong-facility",)
    try:
        root = await roots.root(peer, receipt.tree_size, client)
    except LedgerError:
        return resource, ("anchor-unavailable",)
    return resource, verify_receipt(resource, receipt, root).problems


def _label(resource: Mapping[str, Any] | None) -> str:
    if resource is None:
        return "?"
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')}"


def _dicts(value: object) -> list[dict[str, Any]]:
    """The objects of a JSON array (anything else: none). A member's answer is untrusted
    input: a wrong shape must end in a reported outcome, never in an exception."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class _Malformed(Exception):
    """A 200 answer that is not a FHIR Bundle (JSON object): the member's fault."""


def _bundle(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise _Malformed
    return body


def _next_link(page: Mapping[str, Any]) -> str | None:
    nxt = next((link.get("url") for link in _dicts(page.get("link"))
                if link.get("relation") == "next"), None)
    return nxt if isinstance(nxt, str) else None


def _incomplete(outcome: PeerOutcome, status: Status, reason: str) -> None:
    """End ``outcome`` as failed with ``reason``. An answer that did not finish verifies
    nothing: records from its earlier pages are dropped (``verified`` 0, no ``records``), so
    a partial chart is never shown as the member's verified records -- a missing page could
    hold the allergy that matters. ``found`` keeps what arrived, and receipt failures seen
    before the cut are kept: they are evidence about the member whatever came after."""
    outcome.status = status
    outcome.detail = reason
    if outcome.found:
        outcome.detail += (f" after {outcome.found} entries (incomplete answer: none counted "
                           "as verified)")
    outcome.verified = 0
    outcome.records.clear()


async def _ask(outcome: PeerOutcome, peer: Peer, spec: QuerySpec, *, client: PeerClient,
               creds: Credentials, roots: RootSource) -> None:
    """Fill ``outcome`` with what ``peer`` answers, entry by entry as pages arrive (so a
    caller that gives up on a deadline still knows how far it got). Raises
    :class:`PeerUnavailable` and :class:`_Malformed`; the caller decides the status."""

    def token() -> str:  # a fresh request context (new jti) for every request sent
        return issue_context(creds.key, issuer=creds.facility, audience=peer.id,
                             practitioner=spec.practitioner, role=spec.role,
                             purpose=spec.purpose, cert_thumbprint=creds.thumbprint,
                             reason=spec.reason, lifetime_s=creds.lifetime_s)

    async def get(url: str) -> tuple[int, Any]:
        reply = await client.get(url, token=token)
        if not peer.matches(reply.server_cert or b""):
            raise PeerUnavailable("server certificate is not this member's")
        try:
            return reply.status, json.loads(reply.body) if reply.body else None
        except ValueError:
            if reply.status == 200:  # a 200 must carry the Bundle; an error body may be text
                raise _Malformed from None
            return reply.status, None

    def refused(status: int) -> bool:
        if status == 200:
            return False
        if status == 503:
            # RFC 9110 15.6.4: the member cannot answer now, "which will likely be
            # alleviated after some delay"; our peer API says so with an OperationOutcome
            # "transient" and Retry-After when its storage fails (edge.peer.service
            # unavailable()). Like a member we cannot reach: ask again later, not an error
            # of the member's answer (nor, for the exit status, a member that answered).
            _incomplete(outcome, "unavailable", "http-503: try again later")
            return True
        _incomplete(outcome, "denied" if status == 403 else "refused" if status == 401
                    else "error", f"http-{status}")
        return True

    async def take(page: Mapping[str, Any]) -> str | None:
        """Count and verify ``page``'s entries; its ``next`` link when it is this member's."""
        for entry in _dicts(page.get("entry")):
            outcome.found += 1
            resource, problems = await _verify_entry(entry, peer, client, roots)
            if problems:
                outcome.failures.append(EntryFailure(_label(resource), problems))
            else:
                outcome.verified += 1
                assert resource is not None
                outcome.records.append(resource)
        nxt = _next_link(page)
        # Follow only links back to the same member.
        return nxt if nxt is not None and _same_origin(nxt, peer.url) else None

    # Discovery with the records in one request (docs/peer.md): the match, then every
    # record referring to it, paged.
    status, body = await get(f"{peer.url}/Patient?identifier={quote(spec.patient)}"
                             f"&_revinclude=*&_count={spec.page_size}")
    if refused(status):
        return
    first = _bundle(body)
    entries = _dicts(first.get("entry"))
    if not entries:
        outcome.status = "not-found"
        return
    url: str | None
    if _next_link(first) is None and not any(_mode(e) == "include" for e in entries):
        # The match alone: a patient with no record released to us, or a member that does
        # not know _revinclude (a release before it; FHIR lets a server ignore a search
        # parameter it does not support, 3.1.1.4). $everything answers both rightly.
        match = entries[0].get("resource")
        patient_id = str(match.get("id", "")) if isinstance(match, dict) else ""
        url = (f"{peer.url}/Patient/{quote(patient_id, safe='')}/$everything"
               f"?_count={spec.page_size}")
    else:
        url = await take(first)
    for _ in range(_MAX_PAGES):
        if url is None:
            return
        status, body = await get(url)
        if refused(status):  # e.g. revoked between two pages
            return
        url = await take(_bundle(body))
    if url is not None:
        _incomplete(outcome, "error", f"more than {_MAX_PAGES} pages")


def _mode(entry: Mapping[str, Any]) -> object:
    search = entry.get("search")
    return search.get("mode") if isinstance(search, dict) else None


def _unavailable(outcome: PeerOutcome, exc: PeerUnavailable) -> None:
    # A request that ran out of time is a timeout whichever deadline hit first: the
    # client's per-request one or query_peers' overall one.
    _incomplete(outcome, "timeout" if exc.kind == "timeout" else "unavailable", exc.kind)


async def query_peer(peer: Peer, spec: QuerySpec, *, client: PeerClient, creds: Credentials,
                     roots: RootSource) -> PeerOutcome:
    """Ask one member; never raises for the member's fault (it is in the outcome). A member
    that goes away mid-answer (connection lost, reset, cut-off body, timeout) is
    ``unavailable`` or ``timeout`` with nothing counted as verified (:func:`_incomplete`)."""
    outcome = PeerOutcome(peer.id)
    try:
        await _ask(outcome, peer, spec, client=client, creds=creds, roots=roots)
    except PeerUnavailable as exc:
        _unavailable(outcome, exc)
    except _Malformed:
        _incomplete(outcome, "error", "malformed answer (not a FHIR Bundle)")
    return outcome


def _same_origin(url: str, base: str) -> bool:
    from urllib.parse import urlsplit

    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


async def query_peers(peers: Sequence[Peer], spec: QuerySpec, *, client: PeerClient,
                      creds: Credentials, roots: RootSource,
                      timeout_s: float) -> list[PeerOutcome]:
    """Ask every member in ``peers`` at once; each gets ``timeout_s`` in all. One member's
    failure -- even a bug of ours in handling its answer -- never costs the others theirs:
    every member gets an outcome."""

    async def one(peer: Peer) -> PeerOutcome:
        outcome = PeerOutcome(peer.id)
        try:
            await asyncio.wait_for(
                _ask(outcome, peer, spec, client=client, creds=creds, roots=roots), timeout_s)
        except TimeoutError:
            _incomplete(outcome, "timeout", f"no complete answer within {timeout_s:g} s")
        except PeerUnavailable as exc:
            _unavailable(outcome, exc)
        except _Malformed:
            _incomplete(outcome, "error", "malformed answer (not a FHIR Bundle)")
        except Exception as exc:  # noqa: BLE001 -- see the docstring; logged, not hidden
            # The type name only: a message could quote the member's data.
            log.error("peer query failed", extra={"fields": {
                "peer": peer.id, "error": type(exc).__name__}})
            _incomplete(outcome, "error", f"internal error ({type(exc).__name__})")
        return outcome

    return list(await asyncio.gather(*(one(peer) for peer in peers)))
