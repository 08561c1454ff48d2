"""The daemon's side of the peer worker processes (:mod:`edge.peer.worker`).

The daemon binds the peer socket and accepts on it, starts ``[peer].workers`` processes and
hands each connection to the one holding the fewest (:class:`PeerWorkers`, docs there), and
commits what they send through its :class:`~edge.peer.audit_sink.LocalAuditSink`: the
writer, the anchorer's wake-up and the notification outbox stay in the daemon, so a request
answered by any worker has its JWT id, AuditEvents and notice committed exactly as when the
daemon serves it itself.

A worker that dies is started again (after 1 s, doubling up to 30 s while they keep dying);
its connections are lost to their clients, never a committed record (a request is answered
only after its commit), and new ones go to the others meanwhile. Its counters are kept.
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
from edge.peer.channel import ChannelError, hand_connection, handoff_pair, receive, send
from edge.storage.errors import StorageError

log = logging.getLogger(__name__)

START_TIMEOUT_S: Final = 60.0  # a worker imports the peer stack and opens its TLS files
_BACKOFF_S: Final = (1.0, 30.0)


class PeerWorkerError(EdgeError):
    """A peer worker process could not be started."""

    fault = "environment"


def bind_socket(host: str, port: int) -> socket.socket:
    """The peer API's listening socket (non-blocking: the daemon's event loop accepts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.setblocking(False)
    return sock


class _Slot:
    """One worker process and its channel."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.handoff: socket.socket | None = None  # set while its worker takes connections
        self.open = 0  # connections handed to the running worker and not reported closed
        self.handed = 0  # ever handed, to rotate among workers holding as many
        self.process: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.counters: dict[str, int] = {}
        self.fresh: asyncio.Future[None] | None = None  # a refresh waiting for its counters


class PeerWorkers:
    """Starts, feeds, restarts and stops the peer worker processes, and spreads the peer
    connections over them.

    Balancing: the daemon accepts each connection and passes it (its descriptor) to the
    running worker holding the fewest open connections; the worker does the TLS handshake.
    Peer connections are few and long-lived (keep-alive), so where each one lands decides a
    worker's share of the load for as long as it stays open. Letting the kernel choose
    (SO_REUSEPORT, a hash of each connection's addresses) split bench/peer.py's 16 clients
    3/13, 5/11, 9/7, 6/10, 9/7 in five runs: the worker holding 13 ran its event loop at a
    core's limit while the other idled, and every request on it queued behind the others.
    While no worker runs, connections wait in the listening socket's backlog.
    """

    def __init__(self, settings: Settings, sink: LocalAuditSink, count: int) -> None:
        assert settings.peer is not None and count >= 1
        self._settings = settings
        self._sink = sink
        self._slots = [_Slot(i) for i in range(count)]
        self._supervisors: list[asyncio.Task[None]] = []
        self._requests: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._retired: Counter[str] = Counter()  # the counts of workers that ended
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._taking = asyncio.Event()  # some worker takes connections
        self.bound: list[str] = []
        self.restarts = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Bind the socket and start every worker; returns once all of them serve."""
        peer = self._settings.peer
        assert peer is not None
        self._sock = bind_socket(peer.bind.host, peer.bind.port)
        self.bound = [format_address(self._sock.getsockname())]
        self._accepting = asyncio.create_task(self._accept(self._sock), name="peer-accept")
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
        if self._accepting is not None:
            self._accepting.cancel()
        if self._sock is not None:
            self._sock.close()  # no new connections; the workers finish the ones they hold
            self._sock = None
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
        tasks = [*self._supervisors, *self._requests]
        if self._accepting is not None:
            tasks.append(self._accepting)
        await asyncio.gather(*tasks, return_exceptions=True)

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

    def connections(self) -> dict[int, int]:
        """Open connections each running worker holds, by pid: what the balancing sees (a
        connection counts from its handoff until its worker reports it closed)."""
        return {slot.process.pid: slot.open for slot in self._slots
                if slot.process is not None and slot.process.returncode is None}

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

    # -- connections ----------------------------------------------------------------------

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._taking.wait()
            try:
                connection, _ = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. EMFILE: the backlog keeps the client waiting
                log.error("peer connection not accepted", extra={"fields": {
                    "error": type(exc).__name__}})
                await asyncio.sleep(1.0)
                continue
            with connection:  # the worker holds its own descriptor once handed
                self._hand(connection)

    def _hand(self, connection: socket.socket) -> None:
        """Give ``connection`` to the worker holding the fewest; the next one when it cannot
        take it (it just ended, or stopped reading). None can: the connection is closed (the
        client sees a reset and may retry) and one WARNING line says so."""
        taking = [slot for slot in self._slots if slot.handoff is not None]
        for slot in sorted(taking, key=lambda s: (s.open, s.handed)):
            assert slot.handoff is not None
            try:
                hand_connection(slot.handoff, connection)
            except OSError:
                continue
            slot.open += 1
            slot.handed += 1
            return
        log.warning("peer connection closed: no worker could take it",
                    extra={"fields": {"workers": len(taking)}})

    def _serving(self, slot: _Slot, handoff: socket.socket | None) -> None:
        """``slot``'s worker takes connections on ``handoff`` from now on (None: no more)."""
        if slot.handoff is not None:
            slot.handoff.close()
        slot.handoff, slot.open = handoff, 0
        if any(s.handoff is not None for s in self._slots):
            self._taking.set()
        else:
            self._taking.clear()

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
        ours, theirs = socket.socketpair()
        handoff, their_handoff = handoff_pair()
        try:
            slot.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge.peer.worker", str(their_handoff.fileno()),
                str(theirs.fileno()), pass_fds=(their_handoff.fileno(), theirs.fileno()),
                stdin=subprocess.DEVNULL)
        except BaseException:
            handoff.close()
            raise
        finally:
            theirs.close()
            their_handoff.close()
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
                elif kind == "closed":
                    slot.open = max(0, slot.open - 1)
                elif kind == "ready":
                    self._serving(slot, handoff)
                    if not ready.done():
                        ready.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker ended: its exit status is read below
        finally:
            slot.writer = None
            if slot.handoff is handoff:
                self._serving(slot, None)
            else:
                handoff.close()
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
