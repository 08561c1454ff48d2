"""`hie-edge ledger` admin operations against a real Ethereum node (anvil), then a daemon
configured for that chain anchoring to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from ledger_client.backends.evm import EvmBackend
from ledger_client.devnode import AnvilNode
from tests.integration.conftest import daemon_with, make_instance


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[AnvilNode]:
    node = AnvilNode(tmp_path, args=("--accounts", "1"), state_file=tmp_path / "anvil.json")
    node.start()
    yield node
    node.stop()


def hie_edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=120)


def funded_key(node: AnvilNode, path: Path) -> str:
    account = Account.create()
    node.rpc("anvil_setBalance", account.address, hex(10**20))
    path.write_text(account.key.to_0x_hex() + "\n")
    os.chmod(path, 0o400)
    return str(account.address)


async def test_deploy_register_and_a_daemon_on_the_chain(anvil: AnvilNode, tmp_path: Path,
                                                          ) -> None:
    admin = tmp_path / "admin.key"
    funded_key(anvil, admin)
    deployed = hie_edge("ledger", "deploy", "--rpc-url", anvil.url, "--admin-key-file",
                        str(admin), "--json")
    assert deployed.returncode == 0, deployed.stderr
    info = json.loads(deployed.stdout)
    assert info["chain_id"] == 31337

    instance = tmp_path / "inst"
    facility_key = tmp_path / "facility.key"
    made = hie_edge("ledger", "new-key", str(facility_key))
    assert made.returncode == 0, made.stderr
    address = made.stdout.strip()
    assert facility_key.stat().st_mode & 0o777 == 0o400
    anvil.rpc("anvil_setBalance", address, hex(10**20))
    again = hie_edge("ledger", "new-key", str(facility_key))
    assert again.returncode == 73

    added = hie_edge("ledger", "add-facility", "--rpc-url", anvil.url, "--contract",
                     info["contract"], "--facility", "dev-facility", "--account", address,
                     "--admin-key-file", str(admin))
    assert added.returncode == 0, added.stderr
    backend = EvmBackend(anvil.url, info["contract"], private_key_file=facility_key)
    assert await backend.is_member("dev-facility")
    await backend.aclose()

    evm = (f'\n[ledger.evm]\nrpc_url = "{anvil.url}"\nchain_id = 31337\n'
           f'contract = "{info["contract"]}"\nkey_file = "{facility_key}"\n')
    async with daemon_with(instance, evm,
                           replace={'backend = "local"': 'backend = "evm"'}) as running:
        ready, detail = await running.daemon.readiness()
        assert ready and detail["ledger"] == "ok"
        assert (await running.daemon.status())["ledger"]["backend"] == "evm"


def test_a_daemon_pointed_at_the_wrong_chain_exits_78(anvil: AnvilNode, tmp_path: Path,
                                                      ) -> None:
    facility_key = tmp_path / "facility.key"
    funded_key(anvil, facility_key)
    evm = (f'\n[ledger.evm]\nrpc_url = "{anvil.url}"\nchain_id = 1\n'
           f'contract = "0x{"11" * 20}"\nkey_file = "{facility_key}"\n')
    config = make_instance(tmp_path / "inst", evm,
                           replace={'backend = "local"': 'backend = "evm"'})
    result = hie_edge("run", "--config", str(config))
    assert result.returncode == 78
    assert "ledger.evm.chain_id: anchor rejected: wrong-chain (node serves chain 31337, " \
           "configured chain is 1)" in result.stderr
    assert "Traceback" not in result.stderr


def test_deploy_against_a_dead_node_exits_69(tmp_path: Path) -> None:
    admin = tmp_path / "admin.key"
    admin.write_text(Account.create().key.to_0x_hex())
    os.chmod(admin, 0o400)
    result = hie_edge("ledger", "deploy", "--rpc-url", "http://127.0.0.1:1", "--admin-key-file",
                      str(admin))
    assert result.returncode == 69, result.stderr
    assert "Traceback" not in result.stderr


async def test_chain_outage_during_intake_then_catch_up_and_verify(anvil: AnvilNode,
                                                                   tmp_path: Path) -> None:
    """The node goes away mid-ingest: messages keep being acknowledged and stored, the
    backlog is anchored when the node returns, and `verify --all` passes (issue 6)."""
    from adapters.mllp.client import MLLPClient, parse_ack
    from tests.integration.test_verify import ORU

    admin = tmp_path / "admin.key"
    funded_key(anvil, admin)
    info = json.loads(hie_edge("ledger", "deploy", "--rpc-url", anvil.url, "--admin-key-file",
                               str(admin), "--json").stdout)
    facility_key = tmp_path / "facility.key"
    address = funded_key(anvil, facility_key)
    assert hie_edge("ledger", "add-facility", "--rpc-url", anvil.url, "--contract",
                    info["contract"], "--facility", "dev-facility", "--account", address,
                    "--admin-key-file", str(admin)).returncode == 0
    evm = (f'\n[ledger.evm]\nrpc_url = "{anvil.url}"\nchain_id = 31337\n'
           f'contract = "{info["contract"]}"\nkey_file = "{facility_key}"\n')

    def oru(n: int) -> bytes:
        return ORU.replace(b"{id}", f"E{n}".encode()).replace(b"{n}", str(n).encode())

    async with daemon_with(tmp_path / "inst", evm, replace={
            'backend = "local"': 'backend = "evm"',
            'ack = "on-commit"': 'ack = "on-processed"'}) as running:
        ledger = running.daemon._ledger
        assert ledger is not None
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            first = await client.send_many(oru(n) for n in range(5))
        # Checkpoints made and published here, not by the interval timer (10 s), so the test
        # does not depend on timing.
        anchorer = ledger.anchorer
        anchorer.make_checkpoint()
        await anchorer.publish_pending()
        anchored = ledger.anchorer.status().last_anchored_size
        assert anchored == ledger.anchorer.status().log_size

        anvil.stop()
        async with MLLPClient.connect(host, port) as client:
            during = await client.send_many(oru(n) for n in range(5, 10))
        assert {parse_ack(a).code for a in first + during} == {"AA"}
        anchorer.make_checkpoint()
        await anchorer.publish_pending()  # fails quietly: the outbox keeps the checkpoint
        status = ledger.anchorer.status()
        assert status.last_anchored_size == anchored < status.log_size
        assert not await ledger.anchorer.probe()
        ready, detail = await running.daemon.readiness()
        assert ready and detail["ledger"] == "degraded"

        anvil.start()
        # Back: the probe makes pending checkpoints due now. A pooled connection to the old
        # node process can fail the first request; the outbox retries (bounded here).
        for _ in range(3):
            assert await anchorer.probe()
            await anchorer.publish_pending()
            if anchorer.status().last_anchored_size == anchorer.status().log_size:
                break
        status = ledger.anchorer.status()
        assert status.last_anchored_size == status.log_size
        config = str(running.daemon.config_path)
    result = hie_edge("verify", "--all", "--json", "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] == report["checked"] > 0 and report["pending"] == 0
