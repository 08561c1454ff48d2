"""Peer lookups: latency p50/p99 and lookups/s at 1, 16 and 64 concurrent clients, for a
patient with 200 resources, beside a plain TLS request to the same server in the same run.

The server: the real daemon (subprocess, fresh instance, mutual TLS, consent on file, every
request audited and committed before it is answered). The client: this process, one
keep-alive mutual-TLS connection per concurrent client, a fresh request-context JWT per
request.

What a *lookup* is (issue 8: "one patient lookup for a patient with 200 resources"): what
``hie-edge peer query`` asks one member for a patient, request for request: discovery with
the records (``Patient?identifier=SYSTEM|VALUE&_revinclude=*``: the asker does not know the
patient's id), page by page (``_count`` = ``--page``, default
:data:`edge.peer.query.PAGE_SIZE` as ``peer query`` pages, following each ``next`` link)
until the Patient and its 199 records with their receipts have arrived. With ``peer
query``'s page (1000) that is one request: one JWT verified, one consent decision, three
AuditEvents stored encrypted and ledgered, 200 entries each with its receipt. Before
``_revinclude``, ``peer query`` asked discovery, then ``$everything``: two requests (the
``discovery`` and ``everything`` rows below, for comparison). A lookup's latency is from
the first request sent to the last page read; it excludes only the client's own receipt
checks (``peer query`` verifies each receipt; that is the asker's CPU, not the server's,
and would compete with the server for this machine's cores). The target rows are ``lookup``.

Rows, each timed on its own for ``--seconds``:

- ``metadata``: the baseline, a plain TLS request to the same listener (no JWT, no
  database, no audit);
- ``discovery``: one ``Patient?identifier=`` request (a part of a lookup, for reference);
- ``everything``: one ``$everything?_count=250`` request (all 200 records in one page, for
  reference);
- ``lookup``: as above.

Target (issue 8): lookup p99 <= 50 ms at 16 clients and >= 300 lookups/s. Prints; asserts
nothing (the answers are checked once, before timing).

    .venv/bin/python bench/peer.py [--seconds 3] [--page 1000] [--clients 1,16,64]
                                   [--workers 2] [--only lookup,metadata]
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _figures import record  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from adapters.peer.client import PeerClient  # noqa: E402
from adapters.peer.tls import client_context  # noqa: E402
from edge.crypto.keys import load_keyring  # noqa: E402
from edge.devca import create_ca, issue  # noqa: E402
from edge.instance import InitOptions, init_instance  # noqa: E402
from edge.peer.audit import Actor  # noqa: E402
from edge.peer.codes import RECEIPT_EXTENSION  # noqa: E402
from edge.peer.consent import ConsentSpec, grant  # noqa: E402
from edge.peer.context import issue_context  # noqa: E402
from edge.peer.directory import cert_thumbprint  # noqa: E402
from edge.peer.query import PAGE_SIZE  # noqa: E402
from edge.storage.database import connect, database_path, migrate  # noqa: E402
from edge.store._tx import write_transaction  # noqa: E402
from edge.store.keys import PatientRef, StoreKeys  # noqa: E402
from edge.store.ledgered import put_ledgered  # noqa: E402
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


def setup(root: Path, workers: int) -> tuple[Path, Path, Path, Ed25519PrivateKey, str]:
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
    config.write_text(config.read_text() + f"""
[peer]
bind = "127.0.0.1:0"
workers = {workers}
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


# One unit of work for a client: True when every answer was the expected one.
Unit = Callable[[PeerClient], Awaitable[bool]]

_NEXT = b'"relation":"next","url":"'


def next_link(body: bytes) -> str | None:
    """The Bundle's ``next`` link. The timed loop finds it without parsing the 300 KiB body
    (the client's CPU is this machine's too), with ``bytes.find`` before the first
    ``"entry"`` (our Bundles put ``link`` before ``entry``): a regular expression scanning
    the whole body was 16% of the client's CPU (py-spy) when there is no next page, and
    ``bytes.find`` over the whole body still 14% (its skip loop stops at every quote of the
    JSON). :func:`check_lookup` parses every page and checks this against the parsed link."""
    entries = body.find(b'"entry"')
    start = body.find(_NEXT, 0, entries if entries >= 0 else len(body))
    if start < 0:
        return None
    start += len(_NEXT)
    return body[start:body.index(b'"', start)].decode()


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (proc(5)); [] when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU time (the daemon's, its child processes': the peer workers, the
    conversion workers) used so far, from Linux ``/proc``; zeros elsewhere."""
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and (fields := _stat(int(p.name))) and int(fields[1]) == pid]

    def used(each: int) -> int:
        fields = _stat(each)
        # After the command name: ppid is field 4, utime and stime fields 14 and 15.
        return int(fields[11]) + int(fields[12]) if fields else 0

    tick = os.sysconf("SC_CLK_TCK")
    return used(pid) / tick, sum(used(child) for child in children) / tick


async def measure(ctx: Any, clients: int, seconds: float, unit: Unit,
                  pid: int) -> tuple[float, float, float, int, float, float, float]:
    """(p50 ms, p99 ms, units/s, errors, server CPU ms per unit, of which the daemon's
    process, client CPU ms per unit)."""
    latencies: list[float] = []
    errors = 0
    async with PeerClient(ctx, timeout_s=30, limit=clients) as client:
        await asyncio.gather(*(unit(client) for _ in range(clients)))  # connect, warm up
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                ok = await unit(client)
                latencies.append(time.perf_counter() - started)
                errors += not ok

        began, before, mine = time.perf_counter(), cpu_seconds(pid), time.process_time()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed, after = time.perf_counter() - began, cpu_seconds(pid)
        mine = time.process_time() - mine
    daemon, children = (a - b for a, b in zip(after, before, strict=True))
    per_unit = 1000 / len(latencies)
    return (percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000,
            len(latencies) / elapsed, errors, (daemon + children) * per_unit,
            daemon * per_unit, mine * per_unit)


async def wait_anchored(base: str, ctx: Any, size: int) -> None:
    async with PeerClient(ctx, timeout_s=10) as client:
        for _ in range(600):
            reply = await client.get(f"{base}/ledger/checkpoints/latest", accept="text/plain")
            if reply.status == 200 and int(reply.body.decode().split("\n")[1]) >= size:
                return
            await asyncio.sleep(0.1)
    raise SystemExit("the daemon did not anchor the records")


class Lookups:
    """The requests of the bench against the daemon at ``base``."""

    def __init__(self, base: str, key: Ed25519PrivateKey, thumb: str, page: int) -> None:
        self.base = base
        self.page = page
        self._key = key
        self._thumb = thumb
        self.discovery_url = f"{base}/Patient?identifier={SYSTEM}%7CBENCH1"

    def token(self) -> str:
        return issue_context(self._key, issuer=CLIENT, audience=SERVER, practitioner="dr-bench",
                             role="physician", purpose="TREAT", cert_thumbprint=self._thumb)

    def everything_url(self, patient_id: str, count: int) -> str:
        return f"{self.base}/Patient/{patient_id}/$everything?_count={count}"

    async def metadata(self, client: PeerClient) -> bool:
        return (await client.get(f"{self.base}/metadata")).status == 200

    async def discovery(self, client: PeerClient) -> bool:
        return (await client.get(self.discovery_url, token=self.token())).status == 200

    async def everything(self, client: PeerClient) -> bool:
        reply = await client.get(self.everything_url("bench-patient", 250), token=self.token())
        return reply.status == 200

    def lookup_url(self) -> str:
        return f"{self.discovery_url}&_revinclude=*&_count={self.page}"

    async def lookup(self, client: PeerClient) -> bool:
        """Discovery with the records, every page (what ``peer query`` asks)."""
        url: str | None = self.lookup_url()
        while url is not None:
            reply = await client.get(url, token=self.token())
            if reply.status != 200:
                return False
            url = next_link(reply.body)
        return True

    async def check_lookup(self, client: PeerClient) -> tuple[int, int, int]:
        """One lookup, every answer parsed: (requests, entries, entries with a receipt)."""
        url: str | None = self.lookup_url()
        requests, entries, receipts = 0, 0, 0
        while url is not None:
            reply = await client.get(url, token=self.token())
            assert reply.status == 200, reply.status
            bundle = json.loads(reply.body)
            requests += 1
            entries += len(bundle["entry"])
            receipts += sum(any(e.get("url") == RECEIPT_EXTENSION for e in entry["extension"])
                            for entry in bundle["entry"])
            url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"),
                       None)
            assert url == next_link(reply.body)
        return requests, entries, receipts


async def run(base: str, ctx: Any, key: Ed25519PrivateKey, thumb: str, seconds: float,
              page: int, levels: list[int], only: set[str] | None, pid: int) -> None:
    await wait_anchored(base, ctx, 201)
    bench = Lookups(base, key, thumb, page)
    async with PeerClient(ctx, timeout_s=30) as client:
        requests, entries, receipts = await bench.check_lookup(client)
        assert entries == 200 and receipts == 200, (entries, receipts)
        print(f"a lookup: {requests} request(s) (discovery with _revinclude=*, pages of "
              f"{page}), {entries} entries, {receipts} with receipts")
    units: list[tuple[str, Unit]] = [("metadata (baseline)", bench.metadata),
                                     ("discovery", bench.discovery),
                                     ("everything (1 page)", bench.everything),
                                     ("lookup", bench.lookup)]
    # "server CPU": the user+system time per unit of the daemon and its worker processes,
    # whatever else this shared machine is doing (the other columns move with the machine's
    # load); "daemon": the part of it in the daemon's own process (the single writer: every
    # request's JWT id and AuditEvents are committed there); "client CPU": this process's,
    # which shares the machine's two cores with them.
    print(f"{'unit':<22}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'per s':>10}"
          f"{'x base':>9}{'errors':>8}{'server CPU ms':>15}{'daemon ms':>11}"
          f"{'client CPU ms':>15}")
    for clients in levels:
        base_rate = 0.0
        for name, unit in units:
            if only is not None and name.split()[0] not in only | {"metadata"}:
                continue
            p50, p99, rate, errors, cpu, daemon, mine = await measure(ctx, clients, seconds,
                                                                      unit, pid)
            if name.startswith("metadata"):
                base_rate = rate
            print(f"{name:<22}{clients:>8}{p50:>10.2f}{p99:>10.2f}{rate:>10.0f}"
                  f"{rate / base_rate:>9.2f}{errors:>8}{cpu:>15.2f}{daemon:>11.2f}"
                  f"{mine:>15.2f}")
            if name == "lookup":
                record("peer", f"lookups/s, {clients} clients", rate, "lookup/s",
                       baseline="metadata req/s (plain TLS)", baseline_value=base_rate)
                record("peer", f"lookup p99, {clients} clients", p99, "ms",
                       baseline="target 50 ms", baseline_value=50.0, higher_is_better=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--page", type=int, default=PAGE_SIZE,
                        help=f"$everything page size of a lookup (peer query's: {PAGE_SIZE})")
    parser.add_argument("--clients", default="1,16,64", help="concurrency levels")
    parser.add_argument("--workers", type=int, default=2,
                        help="[peer].workers of the daemon (0: served in its own process)")
    parser.add_argument("--only", help="rows to time, e.g. lookup,discovery (the baseline "
                                       "is always timed)")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    only = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        root = Path(tmp)
        config, cert, key, signing, thumb = setup(root, args.workers)
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
            print(f"peer lookups against the daemon (pid {proc.pid}, {args.workers} peer "
                  f"workers), {args.seconds:g} s each")
            asyncio.run(run(f"https://127.0.0.1:{port}", ctx, signing, thumb, args.seconds,
                            args.page, levels, only, proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log.close()


if __name__ == "__main__":
    main()
