"""The daemon's side of the peer worker processes (:mod:`edge.peer.worker`).

The daemon binds the peer sockets itself, one per worker on one address (so port 0 resolves
once, ``daemon.json`` names the one address every worker serves, and the kernel balances
connections: :func:`bind_sockets`), starts ``[peer].workers`` processes that accept on them,
and commits what they send through its :class:`~edge.peer.audit_sink.LocalAuditSink`: the
writer, the anchorer's wake-up and the notification outbox stay in the daemon, so a request
answered by any worker has its JWT id, AuditEvents and notice committed exactly as when the
daemon serves it itself.

A worker that dies is started again (after 1 s, doubling up to 30 s while they keep dying);
its connections in flight are lost to the client, never a committed record (a request is
answered only after its commit). Its counters are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any, Final

from adapters.base import format_address
from edge.config.model import PeerSettings, Settings
from edge.crypto.errors import IntegrityError
from edge.errors import EdgeError
from edge.peer.audit_batch import Replayed
from edge.peer.audit_sink import LocalAuditSink
from edge.peer.channel import ChannelError, receive, send
from edge.storage.errors import StorageError

log = logging.getLogger(__name__)

START_TIMEOUT_S: Final = 60.0  # a worker imports the peer stack and opens its TLS files
_BACKOFF_S: Final = (1.0, 30.0)


class PeerWorkerError(EdgeError):
    """A peer worker process could not be started."""

    fault = "environment"


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """The peer API's listening sockets, one per worker, bound to one address with
    SO_REUSEPORT (Linux socket(7)): the kernel spreads new connections over them by a hash of
    each connection's addresses. One socket shared by every worker left that to whichever
    worker woke first, and asyncio accepts all it can per wake-up: under bench/peer.py one
    worker took all 16 keep-alive connections and a whole core while the other idled.

    A port someone already listens on is refused as a plain bind would refuse it (SO_REUSEPORT
    would otherwise let a second daemon of the same user share it silently)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as create_server
            probe.bind((host, port))  # OSError (EADDRINUSE) when taken
    made: list[socket.socket] = []
    try:
        while len(made) < count:
            made.append(socket.create_server((host, port), family=family, backlog=1024,
                                             reuse_port=True))
            port = made[0].getsockname()[1]  # port 0 resolves once, for every worker
    except BaseException:
        # None of them is handed out: a socket left open would hold the port (and a file
        # descriptor) for the life of a daemon that reports it could not bind.
        for sock in made:
            sock.close()
        raise
    return made


class _Slot:
    """One worker process and its channel."""

    def __init__(self, index: int) -> None:
        self.index = index
        # Its listening socket, kept open here while the worker restarts: connections the
        # kernel hashes to it wait in its backlog for the replacement instead of failing.
        self.sock: socket.socket | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.counters: dict[str, int] = {}
        self.fresh: asyncio.Future[None] | None = None  # a refresh waiting for its counters


class PeerWorkers:
    """Starts, feeds, restarts and stops the peer worker processes."""

    def __init__(self, settings: Settings, sink: LocalAuditSink, count: int) -> None:
        assert settings.peer is not None and count >= 1
        self._settings = settings
        self._sink = sink
        self._slots = [_Slot(i) for i in range(count)]
        self._supervisors: list[asyncio.Task[None]] = []
        self._requests: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._retired: Counter[str] = Counter()  # the counts of workers that ended
        self.bound: list[str] = []
        self.restarts = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Bind the socket and start every worker; returns once all of them accept."""
        peer = self._settings.peer
        assert peer is not None
        sockets = bind_sockets(peer.bind.host, peer.bind.port, len(self._slots))
        for slot, sock in zip(self._slots, sockets, strict=True):
            slot.sock = sock
        self.bound = [format_address(sockets[0].getsockname())]
        ready = [asyncio.get_running_loop().create_future() for _ in self._slots]
        self._supervisors = [asyncio.create_task(self._supervise(slot, started),
                                                 name=f"peer-worker-{slot.index}")
                             for slot, started in zip(self._slots, ready, strict=True)]
        try:
            await asyncio.wait_for(asyncio.gather(*ready), START_TIMEOUT_S)
        except BaseException:
            await self.aclose(1.0)
            raise
        return self.bound

    async def aclose(self, timeout: float) -> None:
        """Ask every worker to stop (they finish their requests in flight, whose audit
        records are still committed here), wait up to ``timeout``, then kill what is left."""
        self._stopping = True
        for _, writer in self._connected():
            send(writer, "stop")
        waits = [slot.process.wait() for slot in self._slots if slot.process is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), timeout + 5.0)
        for slot in self._slots:
            if slot.process is not None and slot.process.returncode is None:
                log.error("peer worker did not stop in time; killed",
                          extra={"fields": {"worker": slot.index}})
                slot.process.kill()
                await slot.process.wait()
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, *self._requests, return_exceptions=True)
        for slot in self._slots:
            if slot.sock is not None:
                slot.sock.close()
                slot.sock = None

    def update(self, settings: PeerSettings) -> None:
        """A reloaded ``[peer]`` (directory, consent default, roles, limits) for every
        worker; the next request each one answers uses it."""
        self._settings = self._settings.model_copy(update={"peer": settings})
        for _, writer in self._connected():
            send(writer, "settings", settings)

    def _connected(self) -> list[tuple[_Slot, asyncio.StreamWriter]]:
        """The slots whose worker's channel is open, with its writer."""
        return [(slot, slot.writer) for slot in self._slots
                if slot.writer is not None and not slot.writer.is_closing()]

    @property
    def processes(self) -> list[asyncio.subprocess.Process]:
        """The worker processes started last in each slot (running, or ended)."""
        return [slot.process for slot in self._slots if slot.process is not None]

    async def refresh(self, timeout: float = 5.0) -> None:
        """Ask every worker for its counters now (they send changes every second anyway)."""
        waits = []
        for slot, writer in self._connected():
            slot.fresh = asyncio.get_running_loop().create_future()
            waits.append(slot.fresh)
            send(writer, "counters?")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout)

    def counters(self) -> dict[str, int]:
        """The workers' counters, summed (those of workers that ended included)."""
        total = Counter(self._retired)
        for slot in self._slots:
            total.update(slot.counters)
        return dict(total)

    # -- one worker -----------------------------------------------------------------------

    async def _supervise(self, slot: _Slot, ready: asyncio.Future[None]) -> None:
        delay = _BACKOFF_S[0]
        while not self._stopping:
            began = time.monotonic()
            try:
                await self._run(slot, ready)
            except (OSError, ChannelError) as exc:
                log.error("peer worker failed", extra={"fields": {
                    "worker": slot.index, "error": type(exc).__name__}})
            status = slot.process.returncode if slot.process is not None else None
            if not ready.done():
                ready.set_exception(PeerWorkerError(
                    f"peer worker {slot.index} ended before it was ready (exit status "
                    f"{status}; see its log)"))
                return
            if self.stopping:
                return
            if time.monotonic() - began > _BACKOFF_S[1]:
                delay = _BACKOFF_S[0]  # it had been serving: not a crash loop
            self.restarts += 1
            log.error("peer worker ended; starting it again", extra={"fields": {
                "worker": slot.index, "status": status, "after_s": delay}})
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_S[1])

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def _run(self, slot: _Slot, ready: asyncio.Future[None]) -> None:
        """Start the worker and serve its channel until it closes."""
        assert slot.sock is not None
        ours, theirs = socket.socketpair()
        try:
            slot.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge.peer.worker", str(slot.sock.fileno()),
                str(theirs.fileno()), pass_fds=(slot.sock.fileno(), theirs.fileno()),
                stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        slot.writer = writer
        send(writer, "start", self._settings)
        try:
            while True:
                message = await receive(reader)
                kind = message[0]
                if kind in ("audit", "refused"):
                    task = asyncio.create_task(self._commit(writer, *message))
                    self._requests.add(task)
                    task.add_done_callback(self._requests.discard)
                elif kind == "counters":
                    slot.counters = dict(message[1])
                    if slot.fresh is not None and not slot.fresh.done():
                        slot.fresh.set_result(None)
                elif kind == "ready" and not ready.done():
                    ready.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker ended: its exit status is read below
        finally:
            slot.writer = None
            writer.close()
            if slot.process.returncode is None and not self._stopping:
                slot.process.kill()  # it broke the protocol: start a clean one
            await slot.process.wait()
            self._retired.update(slot.counters)
            slot.counters = {}

    async def _commit(self, writer: asyncio.StreamWriter, kind: str, number: int,
                      payload: Any) -> None:
        """Commit a worker's record and answer it (request ``number``)."""
        size, error = await commit_for_worker(self._sink, kind, payload)
        if not writer.is_closing():
            send(writer, "answer", number, size, error)


async def commit_for_worker(sink: LocalAuditSink, kind: str,
                            payload: Any) -> tuple[int, str | IntegrityError | None]:
    """Commit a worker's ``audit`` or ``refused`` record; the answer's (log size, error), as
    :meth:`edge.peer.worker.RemoteAuditSink.answer` reads it: error None, ``"replayed"``, the
    IntegrityError itself (a key the writer could not unwrap: the worker answers 500 and
    logs where, as the daemon's own process does; a 503 would invite retries that fail the
    same way), or a StorageError's text (503, retry later)."""
    try:
        size = await (sink.write(payload) if kind == "audit" else sink.refused(payload))
    except Replayed:
        return 0, "replayed"
    except IntegrityError as exc:
        return 0, exc
    except StorageError as exc:
        return 0, str(exc)
    except Exception as exc:  # noqa: BLE001 - the worker must get an answer, not a hang
        log.error("peer audit write failed", extra={"fields": {
            "error": type(exc).__name__}})
        return 0, "the audit write failed"
    return size, None
