"""The committed ABI and bytecode are what the pinned solcjs makes of contracts/ today."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ledger_client.backends.evm import load_artifact
from ledger_client.devnode import REPO_ROOT


def test_committed_artifact_matches_a_fresh_compile(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "solc").is_dir():
        pytest.fail("node and node_modules/solc are needed: run `npm ci` at the repository root")
    subprocess.run([node, str(REPO_ROOT / "contracts" / "compile.mjs"), str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    fresh = json.loads((tmp_path / "HieAnchor.json").read_text())
    committed = load_artifact("HieAnchor")
    assert fresh["compiler"] == committed["compiler"]
    assert fresh["abi"] == committed["abi"]
    assert fresh["bytecode"] == committed["bytecode"], \
        "contracts/ changed: run `node contracts/compile.mjs` and commit the artifact"
    assert fresh["deployedBytecode"] == committed["deployedBytecode"]
    # The compiler pinned in package.json is the one that built the artifact.
    pinned = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]["solc"]
    assert committed["compiler"].startswith(f"solc {pinned}+")
