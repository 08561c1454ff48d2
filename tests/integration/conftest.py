"""Fixtures that run the real daemon on loopback: port 0 everywhere, readiness awaited, no
sleeps (design.md, "examples to follow" 12)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.config import Settings, load_config
from edge.daemon.app import Daemon
from edge.daemon.notify import Notifier
from edge.instance import InitOptions, init_instance


def make_instance(directory: Path, extra: str = "", *, replace: dict[str, str] | None = None,
                  ) -> Path:
    """An instance made by ``init`` with every port 0, plus ``extra`` TOML appended."""
    config = init_instance(directory, InitOptions(mllp_port=0, admin_port=0, fhir_port=0))
    text = config.read_text()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text + extra)
    return config


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        self.states: list[str] = []
        super().__init__(send=self._record)

    def _record(self, state: str) -> bool:
        self.states.append(state)
        return True


@dataclass
class RunningDaemon:
    daemon: Daemon
    settings: Settings
    task: asyncio.Task[int]
    notifier: RecordingNotifier

    def mllp(self, name: str = "adt") -> tuple[str, int]:
        host, _, port = self.daemon.bound[name][0].rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def admin_url(self) -> str:
        return f"http://{self.daemon.bound['admin'][0]}"

    async def stop(self) -> int:
        self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 30)


async def start_daemon(config: Path) -> RunningDaemon:
    settings = load_config(config)
    notifier = RecordingNotifier()
    daemon = Daemon(config, settings, notifier=notifier)
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(install_signals=False, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=30,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()
        raise AssertionError("daemon stopped before it was ready")
    assert waiter in done, "daemon not ready within 30 s"
    return RunningDaemon(daemon, settings, task, notifier)


@contextlib.asynccontextmanager
async def daemon_with(directory: Path, extra: str = "", *,
                      replace: dict[str, str] | None = None) -> AsyncIterator[RunningDaemon]:
    """A daemon on a fresh instance (see :func:`make_instance`), stopped cleanly at the end."""
    daemon = await start_daemon(make_instance(directory, extra, replace=replace))
    try:
        yield daemon
    finally:
        if not daemon.task.done():
            assert await daemon.stop() == 0


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with daemon_with(tmp_path / "inst") as daemon:
        yield daemon


# -- the daemon as a real process ---------------------------------------------------------

@dataclass
class NotifySocket:
    """A fake systemd notification socket: what the daemon sends, in order."""

    path: Path
    sock: socket.socket
    seen: list[str] = field(default_factory=list)

    def wait_for(self, key: str, timeout: float = 30.0) -> str:
        """Read datagrams until one contains ``key`` (e.g. ``READY=1``); returns it."""
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                raise AssertionError(f"no {key} within {timeout} s; saw {self.seen}") from None
            self.seen.append(data)
            if key in data.split("\n"):
                return data


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield NotifySocket(path, sock)
    sock.close()


class DaemonProcess:
    """``hie-edge run`` in a subprocess; its output goes to files beside the config (a pipe
    nobody reads would stall a chatty daemon)."""

    def __init__(self, config: Path, notify: NotifySocket, env: dict[str, str] | None = None,
                 ) -> None:
        self.config = config
        self.notify = notify
        self.runtime_file = load_config(config).storage.dir / "daemon.json"
        self.log_path = config.parent / "daemon.log"
        environ = {**os.environ, "NOTIFY_SOCKET": str(notify.path), **(env or {})}
        environ.pop("JOURNAL_STREAM", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge", "run", "--config", str(config)],
                env=environ, stdout=log, stderr=log)

    def wait_ready(self) -> str:
        return self.notify.wait_for("READY=1")

    def runtime(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.runtime_file.read_text())
        return data

    def mllp(self, name: str = "adt") -> tuple[str, int]:
        listeners = self.runtime()["listeners"]
        assert isinstance(listeners, dict)
        host, _, port = listeners[name][0].rpartition(":")
        return host.strip("[]"), int(port)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
