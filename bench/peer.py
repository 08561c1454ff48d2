"""Peer lookups: latency p50/p99 and lookups/s at 1, 16 and 64 concurrent clients, for a
patient with 200 resources, beside a plain TLS request to the same server in the same run.

The server: the real daemon (subprocess, fresh instance, mutual TLS, consent on file, every
request audited and committed before it is answered). The client: this process, one
keep-alive mutual-TLS connection per concurrent client, a fresh request-context JWT per
request. Three requests are timed:

- ``metadata``: the baseline, a plain TLS request to the same listener (no JWT, no
  database, no audit);
- ``discovery``: ``Patient?identifier=`` (JWT, consent decision, 1 entry with receipt,
  3 AuditEvents committed);
- ``everything``: ``Patient/{id}/$everything?_count=250`` (all 200 resources decrypted,
  each with its inclusion proof, 3 AuditEvents committed).

Target (issue 8): p99 ≤ 50 ms at 16 clients and ≥ 300 lookups/s. Prints; asserts nothing.

    .venv/bin/python bench/peer.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from adapters.peer.client import PeerClient  # noqa: E402
from adapters.peer.tls import client_context  # noqa: E402
from edge.crypto.keys import load_keyring  # noqa: E402
from edge.devca import create_ca, issue  # noqa: E402
from edge.instance import InitOptions, init_instance  # noqa: E402
from edge.peer.audit import Actor  # noqa: E402
from edge.peer.consent import ConsentSpec, grant  # noqa: E402
from edge.peer.context import issue_context  # noqa: E402
from edge.peer.directory import cert_thumbprint  # noqa: E402
from edge.peer.ledgered import put_ledgered  # noqa: E402
from edge.storage.database import connect, database_path, migrate  # noqa: E402
from edge.store._tx import write_transaction  # noqa: E402
from edge.store.keys import PatientRef, StoreKeys  # noqa: E402
from edge.store.resources import ResourceStore  # noqa: E402
from ledger_client.checkpoint import NoteSigner  # noqa: E402

SYSTEM = "urn:oid:1.2.3.4"
REF = PatientRef(SYSTEM, "BENCH1")
CLIENT = "bench-client"
SERVER = "bench-server"


def resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{
        "resourceType": "Patient", "id": "bench-patient",
        "identifier": [{"system": SYSTEM, "value": "BENCH1",
                        "type": {"coding": [{"code": "MR"}]}}],
        "name": [{"family": "Benchfamily", "given": ["Benchgiven"]}],
        "birthDate": "1970-01-01", "gender": "female"}]
    kinds = ["Observation"] * 150 + ["Condition"] * 15 + ["AllergyIntolerance"] * 5 + [
        "MedicationRequest"] * 15 + ["Immunization"] * 4 + ["Encounter"] * 5 + [
        "DiagnosticReport"] * 5
    for k, kind in enumerate(kinds):
        resource: dict[str, Any] = {"resourceType": kind, "id": f"{kind.lower()}-{k}",
                                    "subject": {"reference": "Patient/bench-patient"},
                                    "code": {"coding": [{"system": "http://loinc.org",
                                                         "code": f"{1000 + k}-{k % 10}",
                                                         "display": "a measurement"}]}}
        if kind == "Observation":
            resource |= {"status": "final", "valueQuantity": {"value": k, "unit": "mg/dL"},
                         "category": [{"coding": [{"code": "laboratory"}]}],
                         "effectiveDateTime": "2026-01-01T10:00:00Z"}
        out.append(resource)
    assert len(out) == 200
    return out


def setup(root: Path) -> tuple[Path, Path, Path, Ed25519PrivateKey, str]:
    tls = root / "consortium"
    tls.mkdir(parents=True)
    ca = create_ca(tls, name="bench")
    server, client = issue(ca, tls, "server", common_name=SERVER), issue(
        ca, tls, "client", common_name=CLIENT)
    client_key = Ed25519PrivateKey.generate()
    vkey = NoteSigner(f"hie-edge/{CLIENT}", client_key).verifier.vkey()
    der = x509.load_pem_x509_certificate(client.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    config = init_instance(root / "inst", InitOptions(facility_id=SERVER, mllp_port=0,
                                                      admin_port=0, fhir_port=0))
    text = config.read_text().replace("anchor_interval_s = 10", "anchor_interval_s = 10")
    config.write_text(text + f"""
[peer]
bind = "127.0.0.1:0"
[peer.tls]
cert = "{server.cert}"
key = "{server.key}"
ca = "{ca.cert}"
[[peer.peers]]
id = "{CLIENT}"
url = "https://127.0.0.1:9"
certificate_sha256 = "{hashlib.sha256(der).hexdigest()}"
signing_key = "{vkey}"
""")
    data = root / "inst" / "data"
    conn = connect(database_path(data))
    try:
        migrate(conn)
        store = ResourceStore(StoreKeys(lambda: load_keyring(root / "inst" / "keys" / "kek")))
        put_ledgered(conn, store, resources(), patient=REF)
        with write_transaction(conn):
            grant(conn, store, REF, ConsentSpec(facilities=(CLIENT,)),
                  actor=Actor("local", SERVER, "local/bench"), facility=SERVER,
                  now=datetime.now(UTC))
    finally:
        conn.close()
    return config, client.cert, client.key, client_key, cert_thumbprint(der)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, ctx: Any, clients: int, seconds: float,
                  token: Any) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    async with PeerClient(ctx, timeout_s=30, limit=clients) as client:
        await asyncio.gather(*(client.get(url, token=token()) for _ in range(clients)))
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                reply = await client.get(url, token=token())
                latencies.append(time.perf_counter() - started)
                errors += reply.status != 200

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return (percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000,
            len(latencies) / elapsed, errors)


async def wait_anchored(base: str, ctx: Any, size: int) -> None:
    async with PeerClient(ctx, timeout_s=10) as client:
        for _ in range(600):
            reply = await client.get(f"{base}/ledger/checkpoints/latest", accept="text/plain")
            if reply.status == 200 and int(reply.body.decode().split("\n")[1]) >= size:
                return
            await asyncio.sleep(0.1)
    raise SystemExit("the daemon did not anchor the records")


async def run(base: str, ctx: Any, key: Ed25519PrivateKey, thumb: str,
              seconds: float) -> None:
    def token() -> str:
        return issue_context(key, issuer=CLIENT, audience=SERVER, practitioner="dr-bench",
                             role="physician", purpose="TREAT", cert_thumbprint=thumb)

    def none() -> None:
        return None

    await wait_anchored(base, ctx, 201)
    targets = [("metadata (baseline)", f"{base}/metadata", none),
               ("discovery", f"{base}/Patient?identifier={SYSTEM}%7CBENCH1", token),
               ("everything (200)", f"{base}/Patient/bench-patient/$everything?_count=250",
                token)]
    async with PeerClient(ctx, timeout_s=30) as client:
        reply = await client.get(targets[2][1], token=token())
        bundle = json.loads(reply.body)
        assert reply.status == 200 and bundle["total"] == 200, (reply.status, bundle.get("total"))
        print(f"$everything answer: {len(reply.body) / 1024:.0f} KiB, {bundle['total']} entries "
              "with receipts")
    print(f"{'request':<22}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}"
          f"{'x base':>9}{'errors':>8}")
    for clients in (1, 16, 64):
        base_rate = 0.0
        for name, url, tok in targets:
            p50, p99, rate, errors = await measure(url, ctx, clients, seconds, tok)
            if name.startswith("metadata"):
                base_rate = rate
            print(f"{name:<22}{clients:>8}{p50:>10.2f}{p99:>10.2f}{rate:>10.0f}"
                  f"{rate / base_rate:>9.2f}{errors:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        root = Path(tmp)
        config, cert, key, signing, thumb = setup(root)
        log = (root / "daemon.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                                cwd=ROOT, stdout=log, stderr=log,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            runtime = root / "inst" / "data" / "daemon.json"
            for _ in range(300):
                if runtime.exists() and "peer" in json.loads(runtime.read_text())["listeners"]:
                    break
                if proc.poll() is not None:
                    raise SystemExit((root / "daemon.log").read_text())
                time.sleep(0.1)
            port = json.loads(runtime.read_text())["listeners"]["peer"][0].rpartition(":")[2]
            ctx = client_context(cert=cert, key=key, ca=root / "consortium" / "ca.pem")
            print(f"peer lookups against the daemon (pid {proc.pid}), {args.seconds:g} s each")
            asyncio.run(run(f"https://127.0.0.1:{port}", ctx, signing, thumb, args.seconds))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log.close()


if __name__ == "__main__":
    main()
