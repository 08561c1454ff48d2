"""What the daemon runs when ``[peer]`` is configured: the peer API (in worker processes, or
in the daemon itself with ``workers = 0``: :mod:`edge.peer.serving`), the writer side of its
audit records and the notification outbox. Imported only then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.config.model import PeerSettings, Settings
from edge.crypto.keys import load_keyring
from edge.peer.audit_sink import LocalAuditSink
from edge.peer.notifications import WebhookSender, outbox_counts
from edge.peer.serving import PeerServer, tls_context
from edge.peer.workers import PeerWorkers
from edge.storage.database import connect
from edge.storage.group_commit import GroupCommitter
from edge.store.keys import StoreKeys
from edge.store.resources import ResourceStore
from ledger_client.anchorer import Anchorer


class PeerRuntime:
    def __init__(self, settings: Settings, db_path: Path, committer: GroupCommitter,
                 anchorer: Anchorer) -> None:
        peer = settings.peer
        assert peer is not None
        self._db_path = db_path
        self._settings = peer
        self.sender = (WebhookSender(db_path, committer, url=peer.webhook.url,
                                     secret_file=peer.webhook.secret_file,
                                     timeout_s=peer.webhook.timeout_s,
                                     max_attempts=peer.webhook.max_attempts)
                       if peer.webhook is not None else None)
        keys = StoreKeys(lambda: load_keyring(settings.keys.kek_file))
        audit = LocalAuditSink(
            committer, ResourceStore(keys), on_appended=anchorer.notify,
            on_notice=self.sender.wake if self.sender is not None else lambda: None)
        self.server: PeerServer | None = None
        self.workers: PeerWorkers | None = None
        if peer.workers:
            # Built here, and dropped, though each worker builds its own: a bad certificate,
            # key or CRL stops the daemon's start with its own error, not a worker's.
            tls_context(peer)
            self.workers = PeerWorkers(settings, audit, peer.workers)
        else:
            self.server = PeerServer(settings, keys, audit)

    async def start(self) -> list[str]:
        """Bind the listener (and start the workers); returns its addresses."""
        if self.workers is not None:
            return await self.workers.start()
        assert self.server is not None
        return await self.server.listener.start()

    @property
    def bound(self) -> list[str]:
        if self.workers is not None:
            return self.workers.bound
        assert self.server is not None
        return self.server.listener.bound

    def background(self) -> list[tuple[str, Any]]:
        """(task name, coroutine) to run while serving: the webhook outbox, when configured."""
        return [("peer-outbox", self.sender.run())] if self.sender is not None else []

    def update(self, settings: PeerSettings) -> bool:
        """Apply a reloaded ``[peer]``: the directory, consent default, roles and limits
        change in place; False when the bind address, TLS files, webhook or number of
        workers changed (those need a restart)."""
        old = self._settings
        if (settings.bind, settings.tls, settings.webhook, settings.workers) != (
                old.bind, old.tls, old.webhook, old.workers):
            return False
        self._settings = settings
        if self.workers is not None:
            self.workers.update(settings)
        if self.server is not None:
            self.server.update(settings)
        return True

    async def refresh(self) -> None:
        """Bring :meth:`counters` up to date now (workers report changes every second)."""
        if self.workers is not None:
            await self.workers.refresh()

    def counters(self) -> dict[str, int]:
        """The service's and the listener's counters (summed over the workers)."""
        if self.workers is not None:
            return self.workers.counters()
        assert self.server is not None
        return self.server.counters()

    def status(self) -> dict[str, Any]:
        counters = self.counters()
        info: dict[str, Any] = {
            "bound": self.bound, "workers": self._settings.workers,
            "accepted": counters.get("accepted", 0),
            "refused_unknown_certificate": counters.get("refused_unknown", 0),
            "requests": counters.get("http_requests", 0),
            "peers": sorted(p.id for p in self._settings.peers),
            "default_consent": self._settings.default_consent,
            **{k: counters.get(k, 0) for k in ("permitted", "denied", "refused",
                                                "break_glass", "unavailable",
                                                "integrity_failures")},
        }
        if self.workers is not None:
            info["worker_restarts"] = self.workers.restarts
            info["worker_pids"] = [p.pid for p in self.workers.processes
                                   if p.returncode is None]
            info["worker_connections"] = {str(pid): n for pid, n
                                          in self.workers.connections().items()}
        if self.sender is not None:
            conn = connect(self._db_path, readonly=True)
            try:
                counts = outbox_counts(conn)
            finally:
                conn.close()
            info["notifications"] = {"pending": counts.pending, "sent": counts.sent,
                                     "failed": counts.failed,
                                     "last_error": self.sender.last_error}
        return info

    async def aclose(self, timeout: float) -> None:
        if self.sender is not None:
            self.sender.stop()
        if self.workers is not None:
            await self.workers.aclose(timeout)
        if self.server is not None:
            await self.server.aclose(timeout)
