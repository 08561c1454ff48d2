"""Peer lookups (issue 8): who may read what, and the proof that it happened.

Modules, in request order: :mod:`.directory` (a client certificate → a facility of the
peer directory), :mod:`.context` (the request-context JWT: practitioner, role, purpose of
use), :mod:`.consent` and :mod:`.decision` (FHIR Consent resources and the decision made at
request time), :mod:`.service` (the read-only peer FHIR API: discovery, ``$everything``,
searches by patient, each entry with its ledger receipt; :mod:`.entries` keeps what a record
version's entry is made of between requests), :mod:`.audit` (IHE BALP
AuditEvents, stored encrypted and hashed into the Merkle log), :mod:`.notifications` (the
webhook outbox), :mod:`.query` (``hie-edge peer query``: ask peers, verify every receipt),
:mod:`.runtime` (what the daemon starts). The TLS listener and the HTTP client are in
:mod:`adapters.peer`. See docs/peer.md.
"""
