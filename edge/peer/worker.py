"""A peer worker process: serves the peer API on connections the daemon accepted.

Why processes: a lookup is CPU work in Python (TLS records, HTTP, the JWT's Ed25519 check,
the consent decision, opening rows, building the Bundle and the AuditEvents), and one
process's GIL holds all of it to one core. The daemon binds the peer socket, starts
``[peer].workers`` of these (:mod:`edge.peer.workers`) and hands each connection it accepts
to the worker holding the fewest; a worker does the TLS handshake and serves every request
of that connection, reports when it closes, reads through its own read-only
connections and caches, and sends each request's durable record to the daemon, whose single
writer commits it (:class:`RemoteAuditSink`); the answer leaves only after that commit, as
in the daemon's own process.

Started as ``python -m edge.peer.worker HANDOFF_FD CHANNEL_FD`` by the daemon, never by hand
(``HANDOFF_FD``: where connections arrive, :func:`edge.peer.channel.take_connections`).
The first message on the channel is the daemon's :class:`~edge.config.model.Settings`.
The worker ends when the daemon says ``stop``, on SIGTERM (systemd signals the whole unit),
or when the channel closes (the daemon is gone: nobody could commit its audit records).
SIGINT and SIGHUP are the daemon's: it forwards reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from typing import Any

from edge.config.model import Settings
from edge.crypto.errors import IntegrityError
from edge.crypto.keys import load_keyring
from edge.heap import freeze_startup_heap
from edge.logs import configure as configure_logging
from edge.peer.audit_batch import AuditWrite, Replayed
from edge.peer.channel import receive, send, take_connections
from edge.peer.serving import PeerServer
from edge.storage.errors import StorageError
from edge.store.keys import StoreKeys
from edge.store.prepared import PreparedRecord

log = logging.getLogger("edge.peer.worker")  # not __main__: it runs with -m

COUNTERS_INTERVAL_S = 1.0  # how often changed counters go to the daemon (its /status)


def _unreachable() -> StorageError:
    return StorageError("audit", "the daemon is not reachable")


class RemoteAuditSink:
    """An :class:`~edge.peer.audit_sink.AuditSink` that has the daemon commit: each call
    sends its record with a number and waits for the daemon's answer to that number."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._next = 0
        self._waiting: dict[int, asyncio.Future[int]] = {}

    async def write(self, item: AuditWrite) -> int:
        return await self._call("audit", item)

    async def refused(self, events: list[PreparedRecord]) -> int:
        return await self._call("refused", events)

    async def _call(self, kind: str, payload: Any) -> int:
        if self._writer.is_closing():
            raise _unreachable()
        self._next += 1
        number = self._next
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        try:
            send(self._writer, kind, number, payload)
            return await future
        finally:
            self._waiting.pop(number, None)

    def answer(self, number: int, size: int, error: str | IntegrityError | None) -> None:
        """The daemon's answer to request ``number`` (see
        :func:`edge.peer.workers.commit_for_worker` for ``error``)."""
        future = self._waiting.get(number)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(size)
        elif isinstance(error, IntegrityError):
            future.set_exception(error)
        elif error == "replayed":
            future.set_exception(Replayed("replayed jti"))
        else:
            future.set_exception(StorageError("audit", error))

    def fail_all(self) -> None:
        """The channel closed: no answer will come for the requests still waiting."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(_unreachable())


class _Worker:
    def __init__(self, settings: Settings, handoff: socket.socket,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._settings = settings
        self._handoff = handoff
        self._reader, self._writer = reader, writer
        self.sink = RemoteAuditSink(writer)
        keys = StoreKeys(lambda: load_keyring(settings.keys.kek_file))
        self.server = PeerServer(settings, keys, self.sink, on_closed=self._closed,
                                 read_threads=0)
        self._stop = asyncio.Event()
        self._sent: dict[str, int] = {}

    def _push_counters(self, *, always: bool = False) -> None:
        counters = self.server.counters()
        if (always or counters != self._sent) and not self._writer.is_closing():
            send(self._writer, "counters", counters)
            self._sent = counters

    def _closed(self) -> None:
        """A connection ended: the daemon counts what each worker holds, to balance."""
        if not self._writer.is_closing():
            send(self._writer, "closed")

    def _take(self) -> None:
        """Serve the connections the daemon handed over; stop taking when it closed its end."""
        connections = take_connections(self._handoff)
        if connections is None:
            self._stop_taking()
            return
        for sock in connections:
            self.server.listener.adopt(sock)

    def _stop_taking(self) -> None:
        if self._handoff.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self._handoff)
            self._handoff.close()

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(COUNTERS_INTERVAL_S)
            self._push_counters()

    async def _listen(self) -> None:
        """Daemon messages until ``stop`` or the channel closes."""
        try:
            while True:
                message = await receive(self._reader)
                if message[0] == "answer":
                    self.sink.answer(*message[1:])
                elif message[0] == "counters?":
                    self._push_counters(always=True)
                elif message[0] == "settings":
                    self.server.update(message[1])
                elif message[0] == "stop":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("peer worker: the daemon closed the channel; stopping")
            self.sink.fail_all()
        finally:
            self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        await self.server.listener.start(listen=False)
        loop.add_reader(self._handoff, self._take)
        freeze_startup_heap()
        send(self._writer, "ready")
        listening = asyncio.create_task(self._listen())
        reporting = asyncio.create_task(self._report())
        try:
            await self._stop.wait()
            # Stop taking connections, let the requests in flight finish (their audit answers
            # still arrive while the channel is open), then say what was counted.
            self._stop_taking()
            await self.server.aclose(self._settings.daemon.shutdown_timeout_s)
            self._push_counters()
            with contextlib.suppress(ConnectionError):  # the daemon may be gone already
                await self._writer.drain()
        finally:
            reporting.cancel()
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(listening, reporting)
            self._writer.close()


async def _serve(handoff_fd: int, channel_fd: int) -> None:
    handoff = socket.socket(fileno=handoff_fd)
    handoff.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=channel_fd))
    kind, settings = await receive(reader)
    if kind != "start" or not isinstance(settings, Settings) or settings.peer is None:
        raise SystemExit("peer worker: the daemon's first message was not its settings")
    configure_logging(settings.logging.level, settings.logging.format)
    await _Worker(settings, handoff, reader, writer).run()


def main(argv: list[str]) -> int:
    # The daemon owns the terminal's Ctrl-C and SIGHUP; it tells its workers what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if len(argv) != 3:
        print("usage: python -m edge.peer.worker HANDOFF_FD CHANNEL_FD (started by the daemon)",
              file=sys.stderr)
        return 64  # EX_USAGE
    asyncio.run(_serve(int(argv[1]), int(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
