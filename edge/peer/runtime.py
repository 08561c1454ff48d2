"""What the daemon runs when ``[peer]`` is configured: the directory, the peer API service,
its mutual-TLS listener and the notification outbox. Imported only then."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from adapters.peer.listener import PeerListener
from adapters.peer.tls import server_context
from edge.config.model import PeerSettings, Settings
from edge.crypto.keys import load_keyring
from edge.peer.directory import Peer, PeerDirectory
from edge.peer.notifications import WebhookSender, outbox_counts
from edge.peer.service import PeerService
from edge.storage.database import connect
from edge.storage.group_commit import GroupCommitter
from edge.store.keys import StoreKeys
from ledger_client.anchorer import Anchorer


class PeerRuntime:
    def __init__(self, settings: Settings, db_path: Path, committer: GroupCommitter,
                 anchorer: Anchorer) -> None:
        peer = settings.peer
        assert peer is not None
        self._db_path = db_path
        self._settings = peer
        self.directory = PeerDirectory.from_settings(peer.peers)
        self.sender = (WebhookSender(db_path, committer, url=peer.webhook.url,
                                     secret_file=peer.webhook.secret_file,
                                     timeout_s=peer.webhook.timeout_s,
                                     max_attempts=peer.webhook.max_attempts)
                       if peer.webhook is not None else None)
        keys = StoreKeys(lambda: load_keyring(settings.keys.kek_file))
        self.service = PeerService(
            facility=settings.facility.id, settings=peer, db_path=db_path,
            committer=committer, keys=keys, latest_anchored=anchorer.latest_anchored,
            on_appended=anchorer.notify,
            on_notice=self.sender.wake if self.sender is not None else lambda: None)
        tls = peer.tls
        self.listener = PeerListener(peer.bind.host, peer.bind.port,
                                     server_context(cert=tls.cert, key=tls.key, ca=tls.ca,
                                                    crl=tls.crl),
                                     self._identify, self.service.handle)

    def _identify(self, der: bytes | None) -> Peer | None:
        return self.directory.identify(der)

    async def start(self) -> list[str]:
        """Bind the listener; returns its addresses."""
        return await self.listener.start()

    def background(self) -> list[tuple[str, Any]]:
        """(task name, coroutine) to run while serving: the webhook outbox, when configured."""
        return [("peer-outbox", self.sender.run())] if self.sender is not None else []

    def update(self, settings: PeerSettings) -> bool:
        """Apply a reloaded ``[peer]``: the directory, consent default, roles and limits
        change in place; False when the bind address, TLS files or webhook changed (those
        need a restart)."""
        old = self._settings
        if (settings.bind, settings.tls, settings.webhook) != (old.bind, old.tls, old.webhook):
            return False
        self._settings = settings
        self.directory = PeerDirectory.from_settings(settings.peers)
        self.service.update(settings)
        return True

    def status(self) -> dict[str, Any]:
        counters = self.service.counters
        info: dict[str, Any] = {
            "bound": self.listener.bound, **self.listener.describe(),
            "peers": self.directory.ids, "default_consent": self._settings.default_consent,
            "permitted": counters.permitted, "denied": counters.denied,
            "refused": counters.refused, "break_glass": counters.break_glass,
        }
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
        await self.listener.aclose(timeout)
        await asyncio.to_thread(self.service.close)
