"""The FHIR API and upstream sources as the daemon runs them: built from ``[fhir]``, started
before READY, reported in /status, closed on shutdown."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from adapters.fhir.client import UpstreamClient
from adapters.fhir.server import FHIRServer
from adapters.tls import client_context
from edge.config import ConfigError
from edge.config.model import FHIRSettings, FHIRSourceSettings
from edge.fhirapi.accounting import AccountingAudit
from edge.fhirapi.poller import Checkpoints, SourcePoller
from edge.fhirapi.service import FHIRService
from edge.inbox.store import InboxStore
from edge.processing.processor import Processor
from edge.storage.group_commit import GroupCommitter
from edge.store.keys import StoreKeys
from edge.store.resources import ResourceStore


class FHIRRuntime:
    def __init__(self, settings: FHIRSettings, db_path: Path, committer: GroupCommitter,
                 inbox: InboxStore, processor: Processor, keys: StoreKeys, *, facility: str,
                 on_appended: Callable[[int], None] = lambda size: None) -> None:
        """``facility``: our id (the audit events' observer); ``on_appended``: the
        anchorer's wake-up, told the log's size after an audit event is appended."""
        self.settings = settings
        store = ResourceStore(keys)
        accounting = AccountingAudit(committer, store, facility=facility, on_appended=on_appended)
        self.service = FHIRService(settings, db_path=db_path, inbox=inbox,
                                   processor=processor, store=store, accounting=accounting)
        self.server = FHIRServer(settings, self.service.handle)
        checkpoints = Checkpoints(db_path, committer)
        self.pollers = [SourcePoller(source, _client(source), self.service.ingest_upstream,
                                     checkpoints) for source in settings.sources]
        self.service.sources = {poller.name: poller for poller in self.pollers}

    async def start(self) -> list[str]:
        return await self.server.start()

    def background(self) -> Iterator[tuple[str, Coroutine[Any, Any, None]]]:
        for poller in self.pollers:
            yield f"fhir-source:{poller.name}", poller.run()

    async def aclose(self, timeout: float) -> None:
        await self.server.aclose(timeout)
        for poller in self.pollers:
            await poller.client.aclose()
        self.service.close()

    def status(self) -> dict[str, Any]:
        return {"bound": self.server.bound, **self.service.counts,
                "sources": [poller.status() for poller in self.pollers]}


def _client(source: FHIRSourceSettings) -> UpstreamClient:
    token = None
    if source.bearer_token_file is not None:
        try:
            token = source.bearer_token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(source.bearer_token_file), [
                f"fhir.sources[{source.name}].bearer_token_file: cannot read "
                f"({type(exc).__name__})"]) from None
    context = None
    if source.tls is not None:
        context = client_context(ca=source.tls.ca, cert=source.tls.cert, key=source.tls.key)
    return UpstreamClient(source.base_url, token=token, ssl_context=context,
                          timeout_s=source.timeout_s)
