"""Shared helpers for the fault-injection tests: message templates that convert, MLLP load
from several connections, a bounded status poll for a daemon in another process, the checks
that every acknowledged message went the whole way, and the figures file the benchmark
report reads (``scripts/bench_report.py``).

Knobs (the make targets set them; CI runs the defaults):

- ``HIE_FAULT_CYCLES``: SIGKILL cycles (default 5; ``make faults-long``: 100).
- ``HIE_FAULT_SEED``: seed of the kill moments (default: random, recorded in the figures).
- ``HIE_FAULT_FIGURES``: where the figures go (default ``build/fault-figures.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.mllp.client import MLLPClient, parse_ack
from adapters.mllp.errors import MLLPError
from edge.config import Settings
from edge.crypto.keys import load_keyring
from edge.inbox.schema import TABLE as INBOX
from edge.normalize import NormalizeContext, normalize
from edge.storage.database import connect, database_path
from edge.store.keys import StoreKeys
from edge.store.resources import ResourceStore

REPO_ROOT = Path(__file__).resolve().parents[2]

ORU = (b"MSH|^~\\&|LAB|HOSP|HIE|EDGE|202601011200||ORU^R01^ORU_R01|{id}|P|2.5.1\r"
       b"PID|1||PAT{n}^^^HOSP^MR||DOE^JANE||19800101|F\r"
       b"OBR|1||F{id}|2345-7^Glucose^LN|||202601011100\r"
       b"OBX|1|NM|2345-7^Glucose^LN||{n}|mg/dL|70-99|H|||F|||202601011100\r")

ADT = (b"MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|HIE|EDGE|202601011200||ADT^A01^ADT_A01|{id}"
       b"|P|2.5.1\r"
       b"EVN|A01|202601011200\r"
       b"PID|1||PAT{n}^^^HOSP^MR||JONES^WILLIAM^A||19610615|M\r"
       b"PV1|1|I|2000^2012^01\r")

PATIENTS = 37  # distinct patients the load spreads over (so data keys are shared and new)


def message(control_id: str, seq: int) -> bytes:
    """A message that converts: ORU^R01 and ADT^A01 in turn, over :data:`PATIENTS` patients.
    The control id is in the OBR filler number too, so no two ORUs share a report."""
    template = ORU if seq % 2 == 0 else ADT
    return template.replace(b"{id}", control_id.encode()).replace(
        b"{n}", str(seq % PATIENTS).encode())


# -- load --------------------------------------------------------------------------------------

@dataclass
class Load:
    """What the clients sent and what came back. ``acked`` holds control ids answered AA or
    CA, in the order the answers arrived; ``messages`` every message sent, by control id."""

    acked: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    messages: dict[str, bytes] = field(default_factory=dict)
    unanswered: int = 0  # sent on a connection that broke before its answer came

    def __repr__(self) -> str:  # assertion messages: counts, not thousands of messages
        return (f"Load(acked={len(self.acked)}, rejected={len(self.rejected)}, "
                f"sent={len(self.messages)}, unanswered={self.unanswered})")

    def ack_count(self) -> int:
        return len(self.acked)


async def pipeline(host: str, port: int, prefix: str, load: Load, *, stop: asyncio.Event,
                   batch: int = 5, on_batch: Callable[[], None] = lambda: None,
                   limit: int | None = None, timeout: float = 30.0,
                   go: asyncio.Event | None = None) -> None:
    """One connection sending ``batch`` messages at a time (pipelined) until ``stop`` is set,
    ``limit`` messages went, or the connection breaks (a killed daemon: not an error here).
    ``on_batch`` runs after every answered batch (the caller decides when to pull the plug);
    while ``go`` is cleared, no new batch starts."""
    sent = 0
    try:
        async with MLLPClient.connect(host, port, timeout=timeout) as client:
            while not stop.is_set() and (limit is None or sent < limit):
                if go is not None:
                    await go.wait()
                count = batch if limit is None else min(batch, limit - sent)
                ids = [f"{prefix}-{sent + i}" for i in range(count)]
                raws = [message(cid, sent + i) for i, cid in enumerate(ids)]
                load.messages.update(zip(ids, raws, strict=True))
                sent += count
                try:
                    answers = await client.send_many(raws)
                except BaseException:
                    load.unanswered += count
                    raise
                for control_id, answer in zip(ids, answers, strict=True):
                    ack = parse_ack(answer)
                    assert ack.control_id == control_id
                    (load.acked if ack.code in ("AA", "CA") else load.rejected).append(
                        control_id)
                on_batch()
    except (MLLPError, ConnectionError, OSError):
        return  # the daemon went away under us


# -- waiting on a daemon in another process ---------------------------------------------------

def get_json(url: str, timeout: float = 10.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


async def poll(check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 120.0,
               interval: float = 0.1) -> None:
    """Call ``check`` until it is true, at most ``timeout`` seconds.

    A bounded poll is the one wait here that is not on an event: a daemon in another process
    (the only kind SIGKILL can test) offers no completion signal for "the backlog is processed
    and anchored", only its ``/status``. ``interval`` is short and the bound generous, so the
    poll decides nothing by timing: it fails only when the state never comes."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(interval)


def settled(status: dict[str, Any]) -> bool:
    """Nothing left to do: every inbox message processed, every leaf anchored, nothing pending
    on the ledger."""
    ledger = status.get("ledger", {})
    return bool(status["inbox"]["pending"] == 0
            and ledger.get("log_size", 0) > 0
            and ledger.get("last_anchored_size") == ledger.get("log_size")
            and ledger.get("checkpoints_pending") == 0)


async def wait_settled(admin_url: str, timeout: float = 180.0) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal latest
        latest = await asyncio.to_thread(get_json, f"{admin_url}/status")
        return settled(latest)

    try:
        await poll(check, what="backlog processed and anchored", timeout=timeout)
    except AssertionError:
        raise AssertionError(f"daemon never settled; last status: {latest}") from None
    return latest


# -- processes ----------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid`` (Linux ``/proc/PID/task/TID/children``)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found.extend(children)
                queue.extend(children)
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    living = []
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rpartition(")")[2].split()[0] != "Z":
                living.append(pid)
    return living


def end(pids: list[int]) -> None:
    """SIGKILL processes this test started (through the daemon), by pid."""
    for pid in alive(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- what must hold after the fault ------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    missing: list[str]  # acknowledged, not in the inbox
    duplicated: list[str]  # acknowledged, in the inbox more than once
    unprocessed: list[str]  # acknowledged, in the inbox, state not 'processed'
    unreadable: list[str]  # acknowledged, its MessageHeader not readable exactly once
    stored: int  # inbox rows
    resources: int  # resource rows (versions) in the store
    expected_resources: int  # what converting every stored message once gives
    integrity: str


def check_delivered(settings: Settings, load: Load) -> Outcome:
    """Every acknowledged message: in the inbox exactly once, state ``processed``, and its
    resources stored exactly once (its message-scoped MessageHeader has exactly one version,
    decrypted and authenticated by the store). Every stored message (acknowledged or cut off
    before its answer) must account for exactly the resource rows converting it once gives:
    ``resources == expected_resources``. The expected resource ids come from the
    normalizer run here (validation off: only the ids matter), not from the database."""
    db = database_path(settings.storage.dir)
    context = NormalizeContext.from_settings(settings, validation="off")
    store = ResourceStore(StoreKeys(lambda: load_keyring(settings.keys.kek_file)))
    conn = connect(db, readonly=True)
    try:
        rows = conn.execute(f"SELECT control_id, state FROM {INBOX}").fetchall()
        counts = Counter(cid for cid, _ in rows)
        states: dict[str, set[str]] = {}
        for cid, state in rows:
            states.setdefault(cid, set()).add(state)
        converted = {cid: normalize(load.messages[cid], context=context).resources
                     for cid in counts}
        unreadable = []
        for cid in load.acked:
            header = converted[cid][0]
            assert header["resourceType"] == "MessageHeader"
            versions = store.history(conn, "MessageHeader", header["id"])
            if len(versions) != 1:
                unreadable.append(cid)
        (resources,) = conn.execute("SELECT count(*) FROM resources").fetchone()
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
    finally:
        conn.close()
    return Outcome(
        missing=[cid for cid in load.acked if counts[cid] == 0],
        duplicated=[cid for cid in load.acked if counts[cid] > 1],
        unprocessed=[cid for cid in load.acked if states.get(cid, set()) - {"processed"}],
        unreadable=unreadable,
        stored=len(rows),
        resources=int(resources),
        expected_resources=sum(len(r) for r in converted.values()),
        integrity=str(integrity),
    )


def integrity_check(db: Path) -> list[str]:
    """``PRAGMA integrity_check`` rows (``["ok"]`` when sound), or the error opening it."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [f"{type(exc).__name__}: {exc}"]


# -- figures for BENCHMARKS.md -----------------------------------------------------------------

def figures_path() -> Path:
    return Path(os.environ.get("HIE_FAULT_FIGURES", REPO_ROOT / "build" / "fault-figures.json"))


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Merge one test's figures into the figures file (written atomically)."""
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    data[name] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default
