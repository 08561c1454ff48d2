"""The chain node (anvil) stops while several MLLP connections keep sending: intake goes on
(every message answered AA), the checkpoints made during the outage wait in the outbox, the
node comes back, the backlog is anchored, and ``hie-edge verify --all`` passes with nothing
pending. Extends the single-connection outage test in tests/integration/test_ledger_cli.py to
load from several connections and the whole-path delivery checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from adapters.mllp.client import MLLPClient, parse_ack
from ledger_client.devnode import AnvilNode
from tests.faults.support import (
    Load,
    check_delivered,
    message,
    pipeline,
    poll,
    record_figures,
)
from tests.integration.conftest import RunningDaemon, daemon_with
from tests.integration.test_ledger_cli import funded_key, hie_edge

CONNECTIONS = 4

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[AnvilNode]:
    node = AnvilNode(tmp_path, args=("--accounts", "1"), state_file=tmp_path / "anvil.json")
    node.start()
    yield node
    node.stop()


def deploy(anvil: AnvilNode, tmp_path: Path) -> str:
    """A contract with this facility registered; returns the ``[ledger.evm]`` table."""
    admin = tmp_path / "admin.key"
    funded_key(anvil, admin)
    deployed = hie_edge("ledger", "deploy", "--rpc-url", anvil.url, "--admin-key-file",
                        str(admin), "--json")
    assert deployed.returncode == 0, deployed.stderr
    contract = json.loads(deployed.stdout)["contract"]
    facility_key = tmp_path / "facility.key"
    address = funded_key(anvil, facility_key)
    added = hie_edge("ledger", "add-facility", "--rpc-url", anvil.url, "--contract", contract,
                     "--facility", "dev-facility", "--account", address, "--admin-key-file",
                     str(admin))
    assert added.returncode == 0, added.stderr
    return (f'\n[ledger.evm]\nrpc_url = "{anvil.url}"\nchain_id = 31337\n'
            f'contract = "{contract}"\nkey_file = "{facility_key}"\n')


# A second listener answering only after processing: one message through it proves the
# messages before it are in the Merkle log, without waiting on time.
SYNC_LISTENER = '\n[[mllp]]\nname = "sync"\nbind = "127.0.0.1:0"\nack = "on-processed"\n'


async def through_processing(running: RunningDaemon, control_id: str, load: Load,
                             go: asyncio.Event) -> None:
    """The load pauses meanwhile: under unbroken intake processing gets only a slice of the
    writer (edge.storage.group_commit), so the backlog before this message would keep
    growing with the wait for it."""
    host, port = running.mllp("sync")
    raw = message(control_id, 0)
    go.clear()
    try:
        async with MLLPClient.connect(host, port) as client:
            ack = parse_ack(await client.send(raw))
    finally:
        go.set()
    assert (ack.code, ack.control_id) == ("AA", control_id)
    load.messages[control_id] = raw
    load.acked.append(control_id)


class Milestones:
    """Events set when the acknowledgement count passes thresholds (waits on progress, not
    on time)."""

    def __init__(self, load: Load) -> None:
        self._load = load
        self._waiting: list[tuple[int, asyncio.Event]] = []

    def at(self, count: int) -> asyncio.Event:
        event = asyncio.Event()
        self._waiting.append((count, event))
        self()
        return event

    def __call__(self) -> None:
        for count, event in self._waiting:
            if self._load.ack_count() >= count:
                event.set()


async def wait_for(event: asyncio.Event, what: str, timeout: float = 60.0) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"{what} within {timeout} s") from None


async def test_chain_outage_under_load_intake_goes_on_and_the_backlog_is_anchored(
        anvil: AnvilNode, tmp_path: Path) -> None:
    evm = deploy(anvil, tmp_path)
    load = Load()
    milestones = Milestones(load)
    stop, go = asyncio.Event(), asyncio.Event()
    go.set()
    async with daemon_with(tmp_path / "inst", evm + SYNC_LISTENER,
                           replace={'backend = "local"': 'backend = "evm"'}) as running:
        ledger = running.daemon._ledger
        assert ledger is not None
        anchorer = ledger.anchorer
        host, port = running.mllp()
        clients = [asyncio.create_task(pipeline(host, port, f"C{c}", load, stop=stop,
                                                on_batch=milestones, go=go))
                   for c in range(CONNECTIONS)]

        # Before: anchored normally. Checkpoints are made and published here, not by the
        # interval timer, so nothing depends on timing.
        await wait_for(milestones.at(200), "200 acknowledgements before the outage")
        await through_processing(running, "SYNC-BEFORE", load, go)
        anchorer.make_checkpoint()
        assert await anchorer.publish_pending() is not None
        anchored_before = anchorer.status().last_anchored_size
        acked_before = load.ack_count()

        # The outage, under load.
        anvil.stop()
        await wait_for(milestones.at(acked_before + 400), "400 acknowledgements in the outage")
        await through_processing(running, "SYNC-DURING", load, go)
        anchorer.make_checkpoint()
        assert await anchorer.publish_pending() is None  # kept in the outbox
        during = anchorer.status()
        assert during.last_anchored_size == anchored_before < during.log_size
        assert during.checkpoints_pending >= 1
        assert not await anchorer.probe()
        ready, detail = await running.daemon.readiness()
        assert ready and detail["ledger"] == "degraded"
        acked_during = load.ack_count() - acked_before

        # Back, still under load.
        anvil.start()
        assert await anchorer.probe()  # cuts the backoff short: pending is due now
        await wait_for(milestones.at(load.ack_count() + 200), "200 acknowledgements after")
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), 60)
        await drained(running)
        anchorer.make_checkpoint()
        await anchorer.publish_pending()
        after = anchorer.status()
        assert after.last_anchored_size == after.log_size > during.log_size
        assert after.checkpoints_pending == 0
        config = running.daemon.config_path
        settings = running.settings

    verify = hie_edge("verify", "--all", "--json", "--config", str(config))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    outcome = check_delivered(settings, load)
    record_figures("chain_outage", {
        "connections": CONNECTIONS, "acknowledged": load.ack_count(),
        "acknowledged_during_outage": acked_during, "rejected": len(load.rejected),
        "losses": len(outcome.missing), "duplicates": len(outcome.duplicated),
        "unprocessed": len(outcome.unprocessed), "records_verified": report["verified"],
        "pending_anchor": report["pending"], "anchors_checked": report["anchors_checked"],
        "leaves_anchored_after_outage": after.last_anchored_size - anchored_before,
    })
    assert load.rejected == []
    assert outcome.missing == outcome.duplicated == outcome.unprocessed == []
    assert outcome.unreadable == []
    assert outcome.resources == outcome.expected_resources
    assert report["ok"] and report["pending"] == 0
    assert report["verified"] == report["checked"] == outcome.resources


async def drained(running: RunningDaemon) -> None:
    """Every inbox message processed. A bounded poll on the daemon's own status (the
    processing stage has no "idle" event to await); see support.poll."""
    status: Callable[[], Awaitable[dict[str, object]]] = running.daemon.status

    async def empty() -> bool:
        inbox = (await status())["inbox"]
        assert isinstance(inbox, dict)
        return bool(inbox["pending"] == 0)

    await poll(empty, what="inbox backlog processed", timeout=120)
