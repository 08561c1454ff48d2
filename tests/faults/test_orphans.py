"""A daemon killed with SIGKILL must not leave its worker processes behind: they hold memory
and, outside systemd's control group (a container, a supervisor that kills only the main
PID), they would accumulate with every crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.faults.support import Load, alive, descendants, end, pipeline, poll
from tests.integration.conftest import DaemonProcess, NotifySocket, make_instance


async def test_worker_processes_exit_when_the_daemon_is_killed(
        tmp_path: Path, notify_socket: NotifySocket) -> None:
    daemon = DaemonProcess(make_instance(tmp_path / "inst"), notify_socket)
    daemon.wait_ready()
    host, port = daemon.mllp()
    load = Load()
    # Enough messages that the processing stage has started its workers.
    await pipeline(host, port, "W", load, stop=asyncio.Event(), limit=40)
    assert load.ack_count() == 40
    workers = descendants(daemon.proc.pid)
    assert workers, "no worker processes started"
    daemon.kill()
    try:
        # Bounded poll: an orphan gives no event to wait on (see support.poll).
        async def gone() -> bool:
            return not alive(workers)

        await poll(gone, what="worker processes gone after the daemon's SIGKILL",
                   timeout=10)
    finally:
        end(workers)
