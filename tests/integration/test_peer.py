"""Peer lookups between three real daemons on loopback (issue 8): one consortium CA signs
every node's certificate; A asks B and C for a patient's records.

B: default consent "deny", break-glass for role emergency-physician, a webhook; the peer API
in two worker processes (the default).
C: default consent "permit-treatment" (treatment without a consent on file); the peer API in
the daemon's own process (``workers = 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import io
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.mllp.client import MLLPClient, parse_ack
from adapters.peer.client import PeerClient, PeerUnavailable
from adapters.peer.tls import client_context
from edge.cli.audit import add_parser as add_audit_parser
from edge.cli.audit import run_audit
from edge.cli.consent import add_parser as add_consent_parser
from edge.cli.consent import run_consent
from edge.cli.peer import add_parser as add_peer_parser
from edge.cli.peer import run_peer
from edge.config import Settings, load_config
from edge.devca import IssuedCert, create_ca, issue
from edge.peer.audit import summarize
from edge.peer.context import issue_context
from edge.peer.directory import Peer, PeerDirectory, cert_thumbprint
from edge.peer.patients import by_identifier
from edge.peer.query import CheckpointRoots, Credentials, PeerOutcome, QuerySpec, query_peers
from edge.signing import load_signing_key
from edge.storage.database import connect, database_path
from edge.store.keys import patient_ref_of
from edge.store.ledgered import put_ledgered
from edge.store.resources import ResourceStore
from ledger_client.checkpoint import NoteSigner
from tests.integration.conftest import RunningDaemon, make_instance, start_daemon

SYSTEM = "urn:oid:1.2.3.4"
PATIENT = f"{SYSTEM}|PAT77"
ADT = (b"MSH|^~\\&|ADT1|HOSP|HIE|EDGE|202601011200||ADT^A01^ADT_A01|{id}|P|2.5.1\r"
       b"EVN|A01|202601011200\r"
       b"PID|1||PAT77^^^HOSP^MR||JONES^WILLIAM^A||19610615|M\r"
       b"PV1|1|I|2000^2012^01\r")
ORU = (b"MSH|^~\\&|LAB|HOSP|HIE|EDGE|202601011200||ORU^R01^ORU_R01|{id}|P|2.5.1\r"
       b"PID|1||PAT77^^^HOSP^MR||JONES^WILLIAM^A||19610615|M\r"
       b"OBR|1||F{n}|2345-7^Glucose^LN|||202601011100\r"
       b"OBX|1|NM|2345-7^Glucose^LN||{n}|mg/dL|70-99|H|||F|||202601011100\r")


# -- the consortium: a CA, certificates, three instances ------------------------------------

def make_crl(ca: IssuedCert, revoked: IssuedCert, path: Path) -> Path:
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    serial = x509.load_pem_x509_certificate(revoked.cert.read_bytes()).serial_number
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(ca_cert.subject).last_update(now - dt.timedelta(minutes=5))
           .next_update(now + dt.timedelta(days=7))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                    .revocation_date(now - dt.timedelta(minutes=1)).build())
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
               ca_key.public_key()), critical=False)
           .add_extension(x509.CRLNumber(1), critical=False)
           .sign(ca_key, hashes.SHA256()))
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def fingerprint(cert: IssuedCert) -> str:
    der = x509.load_pem_x509_certificate(cert.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def vkey(instance: Path, facility: str) -> str:
    pem = (instance / "keys" / "facility-ed25519.pem").read_bytes()
    return NoteSigner.from_pem(f"hie-edge/{facility}", pem).verifier.vkey()


@dataclass
class Webhook:
    url: str
    secret: bytes
    received: asyncio.Queue[tuple[bytes, dict[str, str]]] = field(
        default_factory=asyncio.Queue)


@contextlib.asynccontextmanager
async def webhook_server(secret: bytes) -> AsyncIterator[Webhook]:
    hook = Webhook("", secret)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        hook.received.put_nowait((body, dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hook.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield hook
    finally:
        await runner.cleanup()


@dataclass
class Consortium:
    root: Path
    ca: IssuedCert
    certs: dict[str, IssuedCert]
    daemons: dict[str, RunningDaemon]
    webhook: Webhook

    def peer_port(self, name: str) -> int:
        return int(self.daemons[name].daemon.bound["peer"][0].rpartition(":")[2])

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.peer_port(name)}"

    def context(self, cert: str | None) -> ssl.SSLContext:
        if cert is None:  # trusts the CA, presents nothing
            ctx = ssl.create_default_context(cafile=str(self.ca.cert))
            return ctx
        return client_context(cert=self.certs[cert].cert, key=self.certs[cert].key,
                              ca=self.ca.cert)


def peer_toml(me: str, tls: Path, entries: list[tuple[str, str, str, str]], *,
              default: str, webhook: Webhook | None = None, workers: int = 2) -> str:
    text = f"""
[peer]
bind = "127.0.0.1:0"
workers = {workers}
default_consent = "{default}"
break_glass_roles = ["emergency-physician"]

[peer.tls]
cert = "{tls}/{me}.pem"
key = "{tls}/{me}-key.pem"
ca = "{tls}/ca.pem"
crl = "{tls}/ca.crl"
"""
    if webhook is not None:
        (tls / f"{me}-webhook-secret").write_bytes(webhook.secret)
        text += f"""
[peer.webhook]
url = "{webhook.url}"
secret_file = "{tls}/{me}-webhook-secret"
timeout_s = 5
"""
    for peer_id, url, fp, key in entries:
        text += peer_entry_toml(peer_id, url, fp, key)
    return text


def peer_entry_toml(peer_id: str, url: str, certificate_sha256: str, signing_key: str) -> str:
    """One member of the directory, as ``[[peer.peers]]`` in the config file."""
    return f"""
[[peer.peers]]
id = "{peer_id}"
url = "{url}"
certificate_sha256 = "{certificate_sha256}"
signing_key = "{signing_key}"
"""


def instance(root: Path, name: str) -> Path:
    return make_instance(root / name, replace={
        'id = "dev-facility"': f'id = "{name}"',
        'ack = "on-commit"': 'ack = "on-processed"',
        '# HOSP = "urn:oid:2.16.840.1.113883.3.1234"': f'HOSP = "{SYSTEM}"'})


@contextlib.asynccontextmanager
async def consortium(root: Path) -> AsyncIterator[Consortium]:
    tls = root / "consortium"
    tls.mkdir(parents=True)
    ca = create_ca(tls, name="consortium")
    certs = {name: issue(ca, tls, name, common_name=name)
             for name in ("a", "b", "c", "rogue", "revoked")}
    make_crl(ca, certs["revoked"], tls / "ca.crl")
    configs = {name: instance(root, name) for name in ("a", "b", "c")}
    keys = {name: vkey(root / name, name) for name in configs}
    placeholder = "https://127.0.0.1:9"
    daemons: dict[str, RunningDaemon] = {}
    async with webhook_server(b"s3cret-for-tests") as hook:
        try:
            # B and C only need to recognize A; A needs B's and C's bound addresses.
            a_entry = ("a", placeholder, fingerprint(certs["a"]), keys["a"])
            with configs["b"].open("a") as f:
                f.write(peer_toml("b", tls, [a_entry], default="deny", webhook=hook))
            with configs["c"].open("a") as f:
                # C serves in its own process (workers = 0), B and A through workers.
                f.write(peer_toml("c", tls, [a_entry], default="permit-treatment", workers=0))
            daemons["b"] = await start_daemon(configs["b"])
            daemons["c"] = await start_daemon(configs["c"])
            entries = [(n, "https://" + daemons[n].daemon.bound["peer"][0],
                        fingerprint(certs[n]), keys[n]) for n in ("b", "c")]
            with configs["a"].open("a") as f:
                f.write(peer_toml("a", tls, entries, default="deny"))
            daemons["a"] = await start_daemon(configs["a"])
            yield Consortium(root, ca, certs, daemons, hook)
        finally:
            for running in daemons.values():
                if not running.task.done():
                    assert await running.stop() == 0


# -- helpers ----------------------------------------------------------------------------------

async def ingest(running: RunningDaemon, observations: int) -> None:
    host, port = running.mllp()
    messages = [ADT.replace(b"{id}", b"ADT1")]
    messages += [ORU.replace(b"{id}", f"ORU{n}".encode()).replace(b"{n}", str(90 + n).encode())
                 for n in range(observations)]
    async with MLLPClient.connect(host, port) as client:
        answers = await client.send_many(messages)
    assert {parse_ack(a).code for a in answers} == {"AA"}  # on-processed: stored and logged


async def anchor(running: RunningDaemon) -> None:
    ledger = running.daemon._ledger
    assert ledger is not None
    ledger.anchorer.make_checkpoint()
    await ledger.anchorer.publish_pending()
    status = ledger.anchorer.status()
    assert status.last_anchored_size == status.log_size > 0


async def store_on(running: RunningDaemon, resource: dict[str, Any]) -> None:
    """Write a resource for the patient straight through the daemon's group committer (as
    the local FHIR API will), ledgered like any record."""
    committer = running.daemon._committer
    assert committer is not None
    from edge.crypto.keys import load_keyring
    from edge.store.keys import StoreKeys

    store = ResourceStore(StoreKeys(lambda: load_keyring(running.settings.keys.kek_file)))

    def op(conn: Any) -> None:
        patient = by_identifier(conn, store, PATIENT)
        assert patient is not None
        ref = patient_ref_of(patient.resource)
        put_ledgered(conn, store, [{**resource, "subject": {
            "reference": f"Patient/{patient.id}"}}], patient=ref)

    await committer.run(op)


def cli(add: Any, run: Any, settings_of: RunningDaemon, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add(sub, argparse.ArgumentParser, lambda p: p.add_argument("--config"))
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    with redirect_stdout(out):
        status = run(args, settings_of.settings)
    return status, out.getvalue()


async def consent_cli(running: RunningDaemon, *argv: str) -> tuple[int, str]:
    return await asyncio.to_thread(cli, add_consent_parser, run_consent, running, "consent",
                                   *argv)


async def audit_of(running: RunningDaemon) -> list[dict[str, Any]]:
    status, out = await asyncio.to_thread(cli, add_audit_parser, run_audit, running, "audit",
                                          "--patient", PATIENT, "--json")
    assert status == 0
    result: list[dict[str, Any]] = json.loads(out)
    return result


async def accounting_via_fhir(running: RunningDaemon) -> list[dict[str, Any]]:
    """The patient's AuditEvents from the daemon's local FHIR API (anonymous on loopback)."""
    base = f"http://{running.daemon.bound['fhir'][0]}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/Patient", params={"identifier": PATIENT}) as resp:
            (entry,) = (await resp.json(content_type=None))["entry"]
        async with http.get(f"{base}/AuditEvent", params={
                "patient": f"Patient/{entry['resource']['id']}", "_count": "500"}) as resp:
            assert resp.status == 200
            bundle = await resp.json(content_type=None)
    assert not any(link["relation"] == "next" for link in bundle["link"])
    return [e["resource"] for e in bundle.get("entry", [])]


def asker(settings: Settings, cert: Path, peers: list[str]) -> tuple[list[Peer], Credentials]:
    """Facility "a" asking ``peers``: the members chosen from its directory and its request
    credentials (what ``hie-edge peer query`` builds from the same settings)."""
    assert settings.peer is not None
    directory = PeerDirectory.from_settings(settings.peer.peers)
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    creds = Credentials("a", load_signing_key(settings.keys.signing_key_file),
                        cert_thumbprint(der))
    return [p for p in (directory.get(i) for i in peers) if p is not None], creds


def discovery_by_a(c: Consortium, member: str) -> tuple[str, str]:
    """A request-context JWT from A for ``member`` (treatment) and the discovery URL to use
    it on: for requests made by hand, one token at a time."""
    settings = c.daemons["a"].settings
    der = x509.load_pem_x509_certificate(c.certs["a"].cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    token = issue_context(load_signing_key(settings.keys.signing_key_file), issuer="a",
                          audience=member, practitioner="dr-who", role="physician",
                          purpose="TREAT", cert_thumbprint=cert_thumbprint(der))
    return token, f"{c.url(member)}/Patient?identifier={PATIENT.replace('|', '%7C')}"


async def ask(c: Consortium, peers: list[str], purpose: str = "TREAT", *,
              role: str = "physician", reason: str = "") -> dict[str, PeerOutcome]:
    chosen, creds = asker(c.daemons["a"].settings, c.certs["a"].cert, peers)
    spec = QuerySpec(PATIENT, purpose, "dr-who", role, reason)
    async with PeerClient(c.context("a"), timeout_s=20) as client:
        outcomes = await query_peers(chosen, spec, client=client, creds=creds,
                                     roots=CheckpointRoots(), timeout_s=20)
    return {o.peer: o for o in outcomes}


# -- the tests ----------------------------------------------------------------------------------

async def test_handshake_refuses_no_certificate_unknown_and_revoked(tmp_path: Path) -> None:
    async with consortium(tmp_path) as c:
        runtime = c.daemons["b"].daemon._peer
        assert runtime is not None and runtime.workers is not None  # served by its workers

        async def counters() -> tuple[int, int, int]:
            await runtime.refresh()
            now = runtime.counters()
            return now["accepted"], now["refused_unknown"], now["http_requests"]

        url = c.url("b") + "/metadata"
        # A member gets in (no request context needed for metadata).
        async with PeerClient(c.context("a"), timeout_s=10) as client:
            reply = await client.get(url)
        assert reply.status == 200 and await counters() == (1, 0, 1)
        # No client certificate, or a revoked one: the TLS handshake fails; the gate never
        # sees the connection.
        for cert in (None, "revoked"):
            async with PeerClient(c.context(cert), timeout_s=10) as client:
                with pytest.raises(PeerUnavailable):
                    await client.get(url)
        assert await counters() == (1, 0, 1)
        # Signed by the CA but not in B's directory: the handshake completes, then the
        # connection is aborted before any HTTP is read.
        async with PeerClient(c.context("rogue"), timeout_s=10) as client:
            with pytest.raises(PeerUnavailable):
                await client.get(url)
        # (aiohttp retries a GET once on a dropped connection: refused each time)
        accepted, refused_unknown, requests = await counters()
        assert accepted == 1 and refused_unknown >= 1 and requests == 1


async def test_consent_grant_revoke_and_sensitive_labels(tmp_path: Path) -> None:
    async with consortium(tmp_path) as c:
        b = c.daemons["b"]
        await ingest(b, 3)
        await store_on(b, {"resourceType": "Condition", "id": "hiv-1",
                           "meta": {"security": [{"system": "http://terminology.hl7.org/"
                                                  "CodeSystem/v3-ActCode", "code": "HIV"}]},
                           "code": {"text": "sensitive condition"}})
        await anchor(b)

        # No consent on file, default deny: 403, and the refusal is audited.
        outcome = (await ask(c, ["b"]))["b"]
        assert (outcome.status, outcome.detail, outcome.found) == ("denied", "http-403", 0)
        trail = await audit_of(b)
        decisions = [e for e in trail if e["event"] == "consent-decision"]
        assert [(e["outcome"], e["decision"], e["facility"]) for e in decisions] == [
            ("refused", "no-consent", "a")]

        # Consent for A's treatment: 200, every receipt verifies, the HIV record withheld.
        status, out = await consent_cli(b, "grant", "--patient", PATIENT, "--facility", "a",
                                        "--purpose", "TREAT", "--json")
        assert status == 0
        consent_id = json.loads(out)["id"]
        outcome = (await ask(c, ["b"]))["b"]
        assert outcome.status == "ok" and not outcome.failures
        assert outcome.found == outcome.verified >= 6  # Patient, Encounter, 3 Obs, reports
        types = {r["resourceType"] for r in outcome.records}
        assert {"Patient", "Observation"} <= types
        assert all(r["id"] != "hiv-1" for r in outcome.records)

        # An explicit permit for the label releases it.
        status, out = await consent_cli(b, "grant", "--patient", PATIENT, "--facility", "a",
                                        "--purpose", "TREAT", "--type", "Condition",
                                        "--label", "HIV", "--json")
        assert status == 0
        second_id = json.loads(out)["id"]
        with_label = (await ask(c, ["b"]))["b"]
        assert with_label.found == with_label.verified == outcome.found + 1
        assert any(r["id"] == "hiv-1" for r in with_label.records)

        # Revoke both: the next request is 403.
        for cid in (consent_id, second_id):
            assert (await consent_cli(b, "revoke", "--patient", PATIENT, cid))[0] == 0
        assert (await ask(c, ["b"]))["b"].status == "denied"
        status, out = await consent_cli(b, "list", "--patient", PATIENT, "--json")
        assert {x["status"] for x in json.loads(out)} == {"inactive"}

        # The accounting shows the disclosures, what was released, and no PHI.
        trail = await audit_of(b)
        disclosures = [e for e in trail if e["event"] == "disclosure"]
        # Each query: one request, the Patient with its records (_revinclude=*).
        assert sorted(e["released"] for e in disclosures) == [outcome.found, outcome.found + 1]
        assert all(e["facility"] == "a" and e["purpose"] == "TREAT" for e in disclosures)
        assert not any(e["break_glass"] for e in trail)
        assert "JONES" not in json.dumps(trail)

        # The same accounting from B's local FHIR API (the portal's view): the CLI's listing,
        # then the CLI's own read of it.
        events = await accounting_via_fhir(b)
        assert [e["id"] for e in events[:-1]] == [e["id"] for e in trail]
        assert [summarize(e)["event"] for e in events[-1:]] == ["admin-read"]
        assert sum(summarize(e)["event"] == "disclosure" and summarize(e)["facility"] == "a"
                   for e in events) == 2


async def test_break_glass_is_granted_audited_and_notified(tmp_path: Path) -> None:
    async with consortium(tmp_path) as c:
        b = c.daemons["b"]
        await ingest(b, 1)
        await anchor(b)
        # Without the reason, or in a role not allowed: refused.
        assert (await ask(c, ["b"], "BTG", role="physician",
                          reason="unconscious"))["b"].status == "denied"
        outcome = (await ask(c, ["b"], "BTG", role="emergency-physician",
                             reason="unconscious on arrival"))["b"]
        assert outcome.status == "ok" and outcome.found == outcome.verified > 0
        # One request (the Patient with its records): one disclosure, one notice; none for
        # the refusal.
        body, headers = await asyncio.wait_for(c.webhook.received.get(), 30)
        expected = hmac.new(c.webhook.secret, body, hashlib.sha256).hexdigest()
        assert headers["X-Hie-Edge-Signature"] == "sha256=" + expected
        text = body.decode()
        assert "PAT77" not in text and "JONES" not in text and "1961" not in text
        notice = json.loads(body)
        assert notice["break_glass"] and notice["recipient"] == "a"
        assert notice["purpose"] == "BTG"
        assert {"Observation", "Patient"} <= set(notice["data_classes"])
        assert c.webhook.received.empty()
        trail = await audit_of(b)
        flagged = [e for e in trail if e["break_glass"]]
        assert {e["event"] for e in flagged} >= {"consent-decision", "patient-query",
                                                 "disclosure"}
        assert all(e["user"] == "a/dr-who" and e["role"] == "emergency-physician"
                   for e in flagged)


async def test_default_permit_treatment_tamper_and_replay(tmp_path: Path) -> None:
    async with consortium(tmp_path) as c:
        b, cc = c.daemons["b"], c.daemons["c"]
        await ingest(b, 1)
        await ingest(cc, 2)
        await anchor(b)
        await anchor(cc)
        # C permits treatment by default; B denies: asked together, answered apart.
        both = await ask(c, ["b", "c"])
        assert both["b"].status == "denied"
        assert both["c"].status == "ok" and both["c"].found == both["c"].verified > 0
        assert (await ask(c, ["c"], "HRESCH"))["c"].status == "denied"

        # C's database is altered: a changed Observation takes over an anchored leaf.
        committer = cc.daemon._committer
        assert committer is not None
        from edge.crypto.keys import load_keyring
        from edge.store.keys import StoreKeys

        store = ResourceStore(StoreKeys(lambda: load_keyring(cc.settings.keys.kek_file)))

        def tamper(conn: Any) -> str:
            patient = by_identifier(conn, store, PATIENT)
            assert patient is not None
            ref = patient_ref_of(patient.resource)
            obs = store.search(conn, patient=ref, type="Observation")[0]
            changed = {**obs.resource, "valueQuantity": {"value": 40, "unit": "mg/dL"}}
            stored = store.put(conn, changed, patient=ref)
            assert obs.ledger_index is not None
            store.set_ledger_index(conn, stored.row, obs.ledger_index)
            return f"Observation/{obs.id}"

        label = await committer.run(tamper)
        outcome = (await ask(c, ["c"]))["c"]
        assert outcome.status == "ok"
        assert [f.resource for f in outcome.failures] == [label]
        assert "anchored-root" in outcome.failures[0].problems
        assert outcome.verified == outcome.found - 1

        # A request context is accepted once.
        token, url = discovery_by_a(c, "c")
        async with PeerClient(c.context("a"), timeout_s=10) as client:
            first = await client.get(url, token=token)
            second = await client.get(url, token=token)
        assert (first.status, second.status) == (200, 401)
        assert json.loads(first.body)["total"] == 1

        # The CLI reports the same failure, exit 1.
        status, out = await asyncio.to_thread(
            cli, add_peer_parser, run_peer, c.daemons["a"], "peer", "query", "--patient",
            PATIENT, "--purpose", "TREAT", "--all", "--json")
        assert status == 1
        report = {r["peer"]: r for r in json.loads(out)}
        assert report["b"]["status"] == "denied"
        assert report["c"]["failures"] == [{"resource": label,
                                            "problems": list(outcome.failures[0].problems)}]


@contextlib.contextmanager
def refusing_audit_writes(running: RunningDaemon) -> Iterator[None]:
    """While inside, the daemon's database refuses to store an AuditEvent (a trigger on its
    file), so the commit of a peer request's audit record fails on the daemon's real writer,
    as it would on a full disk."""
    conn = connect(database_path(running.settings.storage.dir))
    try:
        conn.execute("CREATE TRIGGER test_refuse_audit BEFORE INSERT ON resources "
                     "WHEN NEW.type = 'AuditEvent' "
                     "BEGIN SELECT RAISE(ABORT, 'audit writes refused by the test'); END")
        yield
    finally:
        conn.execute("DROP TRIGGER IF EXISTS test_refuse_audit")
        conn.close()


async def test_a_failed_audit_commit_is_503_in_a_worker_and_in_the_daemon(
        tmp_path: Path) -> None:
    """B answers through worker processes (the commit fails in the daemon, the worker hears
    of it over its channel), C in the daemon's own process: both answer 503 ``transient``
    and release nothing; the same request sent again once storage works is answered (its JWT
    id never became durable); /status counts it."""
    async with consortium(tmp_path) as c:
        for name, after in (("b", 403), ("c", 200)):  # B denies by default, C permits
            running = c.daemons[name]
            await ingest(running, 1)
            token, url = discovery_by_a(c, name)
            async with PeerClient(c.context("a"), timeout_s=10) as client:
                with refusing_audit_writes(running):
                    failed = await client.get(url, token=token)
                again = await client.get(url, token=token)
            assert failed.status == 503, (name, failed.status)
            outcome = json.loads(failed.body)
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["code"] == "transient"
            assert again.status == after, (name, again.status)
            runtime = running.daemon._peer
            assert runtime is not None
            await runtime.refresh()
            assert runtime.status()["unavailable"] == 1, name


def flip_patient_byte(running: RunningDaemon) -> None:
    """One ciphertext byte of the member's stored Patient flipped, in its database file."""
    conn = connect(database_path(running.settings.storage.dir))
    try:
        row, body = conn.execute("SELECT row, body FROM resources WHERE type = 'Patient' "
                                 "ORDER BY version DESC LIMIT 1").fetchone()
        with conn:
            conn.execute("UPDATE resources SET body = ? WHERE row = ?",
                         (body[:40] + bytes([body[40] ^ 1]) + body[41:], row))
    finally:
        conn.close()


async def test_a_tampered_row_is_500_in_a_worker_and_in_the_daemon(tmp_path: Path) -> None:
    """B answers through worker processes, C in the daemon's own process: a stored Patient
    that fails verification is a 500 OperationOutcome ``exception`` from both, not aiohttp's
    500 with a traceback; /status counts it (the workers' counters reach the daemon)."""
    async with consortium(tmp_path) as c:
        for name in ("b", "c"):
            running = c.daemons[name]
            await ingest(running, 1)
            flip_patient_byte(running)
            token, url = discovery_by_a(c, name)
            async with PeerClient(c.context("a"), timeout_s=10) as client:
                failed = await client.get(url, token=token)
            assert failed.status == 500, (name, failed.status)
            assert failed.content_type == "application/fhir+json"
            outcome = json.loads(failed.body)
            assert [i["code"] for i in outcome["issue"]] == ["exception"], name
            runtime = running.daemon._peer
            assert runtime is not None
            await runtime.refresh()
            assert runtime.status()["integrity_failures"] == 1, name


async def test_workers_outlive_a_killed_worker_follow_a_reload_and_stop(
        tmp_path: Path) -> None:
    """B serves through worker processes (the default). One is SIGKILLed: the others and its
    replacement go on answering; a token used before the kill is still refused (its JWT id
    is in the database, not in a process); a reload reaches every worker; all of them end
    with the daemon."""
    async with consortium(tmp_path) as c:
        b = c.daemons["b"]
        runtime = b.daemon._peer
        assert runtime is not None and runtime.workers is not None
        workers = runtime.workers
        assert len(workers.processes) == 2
        await ingest(b, 1)
        await anchor(b)
        token, url = discovery_by_a(c, "b")
        async with PeerClient(c.context("a"), timeout_s=10) as client:
            assert (await client.get(url, token=token)).status == 403  # default deny
        killed = workers.processes[0]
        killed.kill()
        await killed.wait()
        async with PeerClient(c.context("a"), timeout_s=10) as client:
            replayed = await client.get(url, token=token)
        assert replayed.status == 401
        assert (await ask(c, ["b"]))["b"].status == "denied"
        async with asyncio.timeout(30):  # the replacement starts after a second
            while workers.restarts < 1 or len(
                    [p for p in workers.processes if p.returncode is None]) < 2:
                await asyncio.sleep(0.05)
        assert killed not in workers.processes

        # A reload that permits treatment by default: every worker answers with it.
        config = b.daemon.config_path
        config.write_text(config.read_text().replace('default_consent = "deny"',
                                                     'default_consent = "permit-treatment"'))
        assert await b.daemon.reload()
        for _ in range(4):
            outcome = (await ask(c, ["b"]))["b"]
            assert outcome.status == "ok" and outcome.found == outcome.verified > 0
        await runtime.refresh()
        counted = runtime.counters()
        # 403 + 401 + 403 before the reload, then 4 lookups of 1 request: the killed
        # worker's counts went with it unless it had reported them (every second).
        assert counted["permitted"] >= 4 and counted["refused"] >= 1
        running = workers.processes
        assert await b.stop() == 0
        assert [p.returncode for p in running] == [0, 0]


def test_example_peer_settings_load(tmp_path: Path) -> None:
    config = make_instance(tmp_path / "x")
    text = config.read_text() + peer_toml("x", tmp_path, [], default="deny")
    config.write_text(text)
    settings = load_config(config)
    assert settings.peer is not None and settings.peer.default_consent == "deny"
