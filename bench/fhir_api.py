"""FHIR API ingest and search, against the store used directly, in the same run.

Ours: the real daemon in this process (fresh instance, FHIR API on loopback): transaction
Bundles of 1, 10 and 100 Observations for one patient are POSTed one after another, each going
inbox → worker validation (full R4B) → store + ledger leaves in one transaction → response.
Baseline: the same resources written by ``ResourceStore.put`` straight into a second fresh
database, one transaction per Bundle (no HTTP, no inbox, no validation, no ledger).

Search: ``Observation?patient=…&code=…&_count=20`` through the API (p50/p99) beside
``ResourceStore.search(patient=…)`` on the same data. Prints ratios; asserts nothing.

    .venv/bin/python bench/fhir_api.py [--resources 300] [--searches 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from edge.config import load_config  # noqa: E402
from edge.crypto.keys import load_keyring  # noqa: E402
from edge.daemon.app import Daemon  # noqa: E402
from edge.instance import InitOptions, init_instance  # noqa: E402
from edge.storage.database import connect, database_path, migrate  # noqa: E402
from edge.store.keys import PatientRef, StoreKeys  # noqa: E402
from edge.store.resources import ResourceStore  # noqa: E402

SYSTEM = "urn:oid:2.16.840.1.113883.3.1234"
PATIENT = {"resourceType": "Patient", "identifier": [
    {"system": SYSTEM, "value": "BENCH-1", "type": {"coding": [{"code": "MR"}]}}],
    "name": [{"family": "Bench", "given": ["Mark"]}], "birthDate": "1980-01-01"}


def observation(subject: str, n: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                      "observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org",
                                 "code": "718-7" if n % 2 else "2345-7"}]},
            "subject": {"reference": subject},
            "effectiveDateTime": f"2024-05-{1 + n % 28:02d}T08:00:00Z",
            "valueQuantity": {"value": 10 + n % 7, "unit": "g/dL",
                              "system": "http://unitsofmeasure.org", "code": "g/dL"}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def api_run(directory: Path, total: int, searches: int,
                  ) -> tuple[dict[int, float], list[float], str]:
    config = init_instance(directory, InitOptions(mllp_port=0, admin_port=0, fhir_port=0))
    daemon = Daemon(config, load_config(config))
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(install_signals=False, ready=ready))
    await ready.wait()
    base = f"http://{daemon.bound['fhir'][0]}"
    rates: dict[int, float] = {}
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession(headers={"Content-Type": "application/fhir+json"}) \
                as http:
            async with http.post(f"{base}/Patient", data=json.dumps(PATIENT)) as response:
                patient_id = (await response.json(content_type=None))["id"]
            subject = f"Patient/{patient_id}"
            # Warm the worker processes (first use starts them) outside the timing.
            await _post_bundle(http, base, [observation(subject, 0)])
            for size in (1, 10, 100):
                bundles = max(1, total // size)
                started = time.perf_counter()
                for b in range(bundles):
                    await _post_bundle(http, base, [observation(subject, b * size + i)
                                                    for i in range(size)])
                rates[size] = bundles * size / (time.perf_counter() - started)
            query = f"{base}/Observation?patient={subject}&code=http://loinc.org|718-7&_count=20"
            for _ in range(searches):
                started = time.perf_counter()
                async with http.get(query) as response:
                    await response.read()
                    assert response.status == 200
                latencies.append(time.perf_counter() - started)
    finally:
        daemon.request_stop()
        await task
    return rates, latencies, subject


async def _post_bundle(http: aiohttp.ClientSession, base: str,
                       resources: list[dict[str, Any]]) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "POST", "url": "Observation"}} for r in resources]}
    async with http.post(f"{base}/", data=json.dumps(bundle)) as response:
        body = await response.read()
        if response.status != 200:
            raise SystemExit(f"bundle refused: {response.status} {body[:300]!r}")


def store_run(directory: Path, total: int, searches: int,
              subject: str) -> tuple[dict[int, float], list[float]]:
    config = init_instance(directory, InitOptions(mllp_port=0, admin_port=0, fhir_port=0))
    settings = load_config(config)
    path = database_path(settings.storage.dir)
    settings.storage.dir.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    migrate(conn)
    store = ResourceStore(StoreKeys(lambda: load_keyring(settings.keys.kek_file)))
    patient = PatientRef(SYSTEM, "BENCH-1")
    rates: dict[int, float] = {}
    counter = 0
    for size in (1, 10, 100):
        bundles = max(1, total // size)
        started = time.perf_counter()
        for b in range(bundles):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(size):
                counter += 1
                store.put(conn, {**observation(subject, b * size + i), "id": f"o{counter}"},
                          patient=patient)
            conn.execute("COMMIT")
        rates[size] = bundles * size / (time.perf_counter() - started)
    latencies = []
    for _ in range(searches):
        started = time.perf_counter()
        found = store.search(conn, patient=patient, type="Observation")
        _ = [r for r in found if r.resource["code"]["coding"][0]["code"] == "718-7"][:20]
        latencies.append(time.perf_counter() - started)
    conn.close()
    return rates, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--resources", type=int, default=300,
                        help="resources per Bundle size (default 300)")
    parser.add_argument("--searches", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        api_rates, api_lat, subject = asyncio.run(
            api_run(Path(tmp) / "api", args.resources, args.searches))
        store_rates, store_lat = store_run(Path(tmp) / "store", args.resources, args.searches,
                                           subject)
    print(f"{'bundle size':>12} {'API res/s':>12} {'store res/s':>12} {'API/store':>10}")
    for size in (1, 10, 100):
        print(f"{size:>12} {api_rates[size]:>12.0f} {store_rates[size]:>12.0f} "
              f"{api_rates[size] / store_rates[size]:>10.2f}")
    n = args.resources
    print(f"\nsearch (patient + code, _count=20) over ~{3 * n} Observations of one patient:")
    for name, values in (("API", api_lat), ("store", store_lat)):
        print(f"  {name:>5}: p50 {1000 * statistics.median(values):7.2f} ms   "
              f"p99 {1000 * percentile(values, 0.99):7.2f} ms")
    print(f"  API/store p50 ratio: {statistics.median(api_lat) / statistics.median(store_lat):.2f}")


if __name__ == "__main__":
    main()
