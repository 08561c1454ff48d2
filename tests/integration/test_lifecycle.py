"""The daemon as systemd sees it: a real process, a fake NOTIFY_SOCKET, real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.integration.conftest import DaemonProcess, NotifySocket, make_instance


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_ready_watchdog_reload_and_stop_in_order(tmp_path: Path,
                                                 notify_socket: NotifySocket) -> None:
    config = make_instance(tmp_path / "inst")
    daemon = DaemonProcess(config, notify_socket, env={"WATCHDOG_USEC": "200000"})
    try:
        ready = daemon.wait_ready()
        assert "STATUS=serving adt on 127.0.0.1:" in ready
        admin = daemon.runtime()["admin"]
        assert isinstance(admin, list)
        status, body = _get(f"http://{admin[0]}/readyz")
        assert (status, body["ready"]) == (200, True)
        notify_socket.wait_for("WATCHDOG=1")

        # SIGHUP with a good new config: RELOADING (with MONOTONIC_USEC), then READY again.
        config.write_text(config.read_text() + '\n[logging]\nlevel = "debug"\n')
        daemon.signal(signal.SIGHUP)
        reloading = notify_socket.wait_for("RELOADING=1")
        assert "MONOTONIC_USEC=" in reloading
        notify_socket.wait_for("READY=1")
    finally:
        code = daemon.stop()
    assert code == 0
    notify_socket.wait_for("STOPPING=1", timeout=5)
    keys = [line.split("=")[0] for data in notify_socket.seen for line in data.split("\n")]
    order = [k for k in keys if k in ("READY", "WATCHDOG", "RELOADING", "STOPPING")]
    assert order[0] == "READY"
    assert order.index("WATCHDOG") < order.index("RELOADING") < order.index("STOPPING")
    assert order[-1] == "STOPPING"
    assert "STATUS" in keys


def test_bad_config_on_sighup_keeps_the_old_one(tmp_path: Path,
                                                notify_socket: NotifySocket) -> None:
    config = make_instance(tmp_path / "inst")
    good = config.read_text()
    daemon = DaemonProcess(config, notify_socket)
    try:
        daemon.wait_ready()
        host, port = daemon.mllp()
        config.write_text(good + "\n[storage2]\nx = 1\n")
        daemon.signal(signal.SIGHUP)
        notify_socket.wait_for("RELOADING=1")
        notify_socket.wait_for("READY=1")
        # Still serving on the same listener.
        assert daemon.mllp() == (host, port)
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
    log = daemon.log()
    assert "reload refused; keeping the running configuration" in log
    assert "storage2: unknown key" in log


def test_sigterm_exits_zero_and_removes_the_runtime_file(tmp_path: Path,
                                                         notify_socket: NotifySocket) -> None:
    config = make_instance(tmp_path / "inst")
    daemon = DaemonProcess(config, notify_socket)
    daemon.wait_ready()
    runtime = tmp_path / "inst" / "data" / "daemon.json"
    assert runtime.exists()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert not runtime.exists()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_run_with_a_wrong_key_exits_78_naming_it(tmp_path: Path) -> None:
    config = make_instance(tmp_path / "inst",
                           '\n[[mllp]]\nname = "lab"\nbind = "127.0.0.1:70000"\n')
    result = _cli("run", "--config", str(config))
    assert result.returncode == 78
    assert "mllp[1].bind: port 70000 is not in 0..65535" in result.stderr
    assert "Traceback" not in result.stderr
