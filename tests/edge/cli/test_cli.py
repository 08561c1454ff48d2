"""The command line as an operator uses it: real processes, real exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge import __version__
from edge.cli.main import main
from tests.integration.conftest import make_instance


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HIE_EDGE_CONFIG"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=60, env=environ)


def test_version() -> None:
    result = cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"hie-edge {__version__}")


def test_usage_errors_exit_64_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 64
    assert main(["messages", "list", "--limit", "many"]) == 64
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err
    assert "Traceback" not in err


def test_init_makes_a_private_instance_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "site"
    result = cli("init", str(target))
    assert result.returncode == 0, result.stderr
    assert (target / "edge.toml").is_file()
    for secret in ("keys/kek", "keys/facility-ed25519.pem", "tls/ca-key.pem", "tls/node-key.pem"):
        assert (target / secret).stat().st_mode & 0o777 == 0o400, secret
    again = cli("init", str(target))
    assert again.returncode == 73
    assert "refusing to overwrite" in again.stderr


def test_check_config_good_and_bad(tmp_path: Path) -> None:
    config = make_instance(tmp_path / "inst")
    assert cli("check-config", "--config", str(config)).returncode == 0
    # --config after the subcommand's arguments, or from the environment, works the same.
    assert cli("check-config", env={"HIE_EDGE_CONFIG": str(config)}).returncode == 0
    os.chmod(tmp_path / "inst" / "keys" / "kek", 0o440)
    os.chmod(tmp_path / "inst" / "keys" / "facility-ed25519.pem", 0o644)
    result = cli("check-config", "--config", str(config))
    assert result.returncode == 78
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 2
    assert "keys.kek_file:" in lines[0] and "mode 0440" in lines[0]
    assert "keys.signing_key_file:" in lines[1] and "mode 0644" in lines[1]


def test_check_config_names_bad_keys(tmp_path: Path) -> None:
    config = make_instance(tmp_path / "inst", '\n[ledger2]\nx = 1\n',
                           replace={'timezone = "UTC"': 'timezone = "Nowhere/City"'})
    result = cli("check-config", "--config", str(config))
    assert result.returncode == 78
    assert f"{config}: facility.timezone: 'Nowhere/City' is not an IANA time zone" in result.stderr
    assert f"{config}: ledger2: unknown key" in result.stderr


def test_status_without_a_daemon_exits_69(tmp_path: Path) -> None:
    config = make_instance(tmp_path / "inst")
    result = cli("status", "--config", str(config))
    assert result.returncode == 69
    assert "not running" in result.stderr


def test_missing_config_exits_78(tmp_path: Path) -> None:
    result = cli("check-config", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 78
    assert "nope.toml: file not found" in result.stderr


def test_convert_prints_one_bundle_per_message(tmp_path: Path, corpora_dir: Path) -> None:
    source = corpora_dir / "hapi-hl7v2" / "ADT_A01.txt"
    result = cli("convert", str(source), "--timezone", "America/Chicago")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    bundle = json.loads(line)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    types = {entry["resource"]["resourceType"] for entry in bundle["entry"]}
    assert {"Patient", "Encounter", "MessageHeader", "Provenance"} <= types
    assert cli("convert", str(tmp_path / "missing.hl7")).returncode == 66


def test_check_config_names_missing_tls_files_of_every_listener(tmp_path: Path) -> None:
    extra = ('\n[peer]\nbind = "127.0.0.1:0"\n[peer.tls]\ncert = "tls/peer.pem"\n'
             'key = "tls/peer-key.pem"\nca = "tls/ca.pem"\n')
    config = make_instance(tmp_path / "inst", extra)
    result = cli("check-config", "--config", str(config))
    assert result.returncode == 78
    assert "peer.tls.cert:" in result.stderr and "file not found" in result.stderr
    assert "peer.tls.key:" in result.stderr
    assert "peer.tls.ca" not in result.stderr  # that one exists
    # `run` refuses the same config up front, with the same lines, not an internal error.
    run = cli("run", "--config", str(config))
    assert run.returncode == 78 and "peer.tls.cert:" in run.stderr
