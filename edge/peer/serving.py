"""The peer API as one process serves it: the member directory, the service and its
mutual-TLS listener, kept together so a reload changes them together. The daemon runs one
with ``[peer].workers = 0`` (:mod:`edge.peer.runtime`); otherwise each worker process runs
one on the connections the daemon hands it (:mod:`edge.peer.worker`)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import asdict

from adapters.peer.listener import PeerListener
from adapters.peer.tls import server_context
from edge.config.model import PeerSettings, Settings
from edge.peer.audit_sink import AuditSink
from edge.peer.directory import Peer, PeerDirectory
from edge.peer.service import READ_THREADS, PeerService
from edge.storage.database import database_path
from edge.store.keys import StoreKeys


def tls_context(peer: PeerSettings) -> ssl.SSLContext:
    """The listener's mutual-TLS context from ``[peer.tls]`` (raises for a bad file)."""
    tls = peer.tls
    return server_context(cert=tls.cert, key=tls.key, ca=tls.ca, crl=tls.crl)


class PeerServer:
    """Serves ``settings.peer`` on the configured bind address, or (a worker process) on the
    connections handed to ``listener.adopt``, reporting each one's end to ``on_closed``.
    Durable writes go to ``audit``."""

    def __init__(self, settings: Settings, keys: StoreKeys, audit: AuditSink, *,
                 on_closed: Callable[[], None] | None = None,
                 read_threads: int = READ_THREADS) -> None:
        peer = settings.peer
        assert peer is not None
        self.directory = PeerDirectory.from_settings(peer.peers)
        self.service = PeerService(facility=settings.facility.id, settings=peer,
                                   db_path=database_path(settings.storage.dir), keys=keys,
                                   audit=audit, read_threads=read_threads)
        self.listener = PeerListener(peer.bind.host, peer.bind.port, tls_context(peer),
                                     self._identify, self.service.handle,
                                     on_closed=on_closed)

    def _identify(self, der: bytes | None) -> Peer | None:
        return self.directory.identify(der)

    def update(self, settings: PeerSettings) -> None:
        """A reloaded ``[peer]``: the directory, consent default, roles and limits, for the
        next connection and request."""
        self.directory = PeerDirectory.from_settings(settings.peers)
        self.service.update(settings)

    def counters(self) -> dict[str, int]:
        """What ``/status`` shows of this process: the service's decisions and the
        listener's connections and requests, by name."""
        counted = self.listener.counters
        return {**asdict(self.service.counters), "accepted": counted.accepted,
                "refused_unknown": counted.refused_unknown, "http_requests": counted.requests}

    async def aclose(self, timeout: float) -> None:
        """Stop accepting, let the requests in flight finish (up to ``timeout``), close."""
        await self.listener.aclose(timeout)
        await asyncio.to_thread(self.service.close)
