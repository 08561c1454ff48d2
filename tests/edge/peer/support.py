"""A peer-service environment without sockets: a migrated database, the group committer, a
store, an anchorer on the fake ledger, keys for two facilities and a client certificate."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from edge.config.model import PeerSettings
from edge.crypto.keys import generate_kek_file, load_keyring
from edge.peer.audit import Actor
from edge.peer.audit_sink import LocalAuditSink
from edge.peer.consent import ConsentSpec, build_consent, revoke, store_consent
from edge.peer.context import issue_context
from edge.peer.directory import Peer, cert_thumbprint
from edge.peer.service import PeerRequest, PeerResponse, PeerService
from edge.storage.database import connect, migrate
from edge.storage.group_commit import GroupCommitter
from edge.store.keys import PatientRef, StoreKeys
from edge.store.ledgered import put_ledgered
from edge.store.resources import ResourceStore
from ledger_client.anchorer import Anchorer
from ledger_client.checkpoint import NoteSigner, NoteVerifier
from ledger_client.log import MerkleLog
from ledger_client.testing import FakeBackend

SYSTEM = "urn:oid:1.2.3.4"
REF = PatientRef(SYSTEM, "MRN1")
HERE = "here"


def self_signed(name: str) -> bytes:
    """A certificate (DER); the service only hashes it (the handshake is not under test)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def patient(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": f"pat-{n}",
            "identifier": [{"system": SYSTEM, "value": f"MRN{n}",
                            "type": {"coding": [{"code": "MR"}]}}],
            "name": [{"family": "Quxfam", "given": ["Zorb"]}], "birthDate": "1970-01-0" + str(n),
            "gender": "female", **extra}


def observation(k: int, *labels: str) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": f"obs-{k}",
                                "status": "final", "code": {"text": "glucose"},
                                "category": [{"coding": [{"code": "laboratory"}]}],
                                "subject": {"reference": "Patient/pat-1"},
                                "valueQuantity": {"value": k}}
    if labels:
        resource["meta"] = {"security": [{"code": label} for label in labels]}
    return resource


@dataclass
class PeerEnv:
    db: Path
    committer: GroupCommitter
    store: ResourceStore
    anchorer: Anchorer
    service: PeerService
    peer: Peer
    peer_key: Ed25519PrivateKey
    cert: bytes
    checkpoints: NoteVerifier  # of this facility's signed checkpoints (as peers know it)

    def close(self) -> None:
        self.service.close()
        self.committer.close()

    def connect(self) -> sqlite3.Connection:
        return connect(self.db)

    def one(self, query: str, *params: Any) -> Any:
        """The first column of the first row of ``query``, on a connection of its own."""
        conn = self.connect()
        try:
            return conn.execute(query, params).fetchone()[0]
        finally:
            conn.close()

    def execute(self, statement: str, *params: Any) -> None:
        """One statement, committed, on a connection of its own (a test altering rows)."""
        conn = self.connect()
        try:
            with conn:
                conn.execute(statement, params)
        finally:
            conn.close()

    def put(self, resources: list[Mapping[str, Any]], ref: PatientRef | None = REF) -> None:
        conn = self.connect()
        try:
            put_ledgered(conn, self.store, resources, patient=ref)
        finally:
            conn.close()

    async def anchor(self) -> None:
        self.anchorer.make_checkpoint()
        await self.anchorer.publish_pending()

    def token(self, purpose: str = "TREAT", *, role: str = "physician", reason: str = "",
              **overrides: Any) -> str:
        args: dict[str, Any] = {"issuer": self.peer.id, "audience": HERE,
                                "practitioner": "dr-x", "role": role, "purpose": purpose,
                                "cert_thumbprint": cert_thumbprint(self.cert),
                                "reason": reason, **overrides}
        return issue_context(self.peer_key, **args)

    async def get(self, path: str, query: Mapping[str, str] | None = None, *,
                  token: str | None = None, purpose: str = "TREAT",
                  service: PeerService | None = None, **kw: Any) -> PeerResponse:
        """GET ``path`` from ``service`` (default: this env's) with a fresh JWT (``kw``:
        :meth:`token`'s) unless ``token`` is given."""
        auth = f"Bearer {token or self.token(purpose, **kw)}"
        return await (service or self.service).handle(PeerRequest(
            peer=self.peer, cert_der=self.cert, method="GET", path=path, query=query or {},
            authorization=auth, remote="127.0.0.1:5", base_url="https://here.test"))


def make_env(tmp_path: Path, **peer_settings: Any) -> PeerEnv:
    kek = tmp_path / "kek"
    generate_kek_file(kek)
    db = tmp_path / "edge.db"
    conn = connect(db)
    migrate(conn)
    conn.close()
    committer = GroupCommitter(db)
    committer.start()
    keys = StoreKeys(lambda: load_keyring(kek))
    signer = NoteSigner(f"hie-edge/{HERE}", Ed25519PrivateKey.generate())
    anchorer = Anchorer(MerkleLog.open(db), FakeBackend(), signer, HERE)
    peer_key = Ed25519PrivateKey.generate()
    cert = self_signed("there")
    peer = Peer("there", "https://there.test", NoteSigner("hie-edge/there", peer_key).verifier,
                None, "CN=there")
    settings = PeerSettings.model_validate(
        {"tls": {"cert": "c", "key": "k", "ca": "ca"}, "break_glass_roles": ["er"],
         **peer_settings})
    service = new_service(db, committer, keys, settings)
    return PeerEnv(db, committer, ResourceStore(keys), anchorer, service, peer, peer_key, cert,
                   signer.verifier)


def new_service(db: Path, committer: GroupCommitter, keys: StoreKeys,
                settings: PeerSettings) -> PeerService:
    """A service as the daemon runs it in its own process: audit through its committer."""
    return PeerService(facility=HERE, settings=settings, db_path=db, keys=keys,
                       audit=LocalAuditSink(committer, ResourceStore(keys)))


def grant(env: PeerEnv, patient_id: str = "pat-1", ref: PatientRef = REF, **spec: Any) -> str:
    """A Consent for the patient, stored as a local operator would (``consent grant``);
    ``spec``: :class:`ConsentSpec` fields. Returns the Consent's id."""
    conn = env.connect()
    try:
        now = dt.datetime.now(dt.UTC)
        consent = build_consent(ConsentSpec(**spec), patient_id=patient_id, now=now)
        store_consent(conn, env.store, consent, patient=ref,
                      actor=Actor("local", HERE, "local/op"), facility=HERE, now=now)
        return str(consent["id"])
    finally:
        conn.close()


def withdraw(env: PeerEnv, consent_id: str, ref: PatientRef = REF) -> None:
    """Revoke a Consent :func:`grant` stored, as a local operator would."""
    conn = env.connect()
    try:
        revoke(conn, env.store, ref, consent_id, actor=Actor("local", HERE, "local/op"),
               facility=HERE, now=dt.datetime.now(dt.UTC))
    finally:
        conn.close()


def flip_byte(env: PeerEnv, rid: str) -> int:
    """One ciphertext byte of ``rid``'s version 1 flipped, in the database file; its row."""
    row = int(env.one("SELECT row FROM resources WHERE id = ? AND version = 1", rid))
    body = bytearray(env.one("SELECT body FROM resources WHERE row = ?", row))
    body[40] ^= 0x01
    env.execute("UPDATE resources SET body = ? WHERE row = ?", bytes(body), row)
    return row
