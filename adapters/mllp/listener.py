"""The asyncio MLLP listener: an I/O shell around :class:`~adapters.mllp.framing.Framer`.

It only moves bytes (design.md, "examples to follow" 2): frames go to ``deliver`` and its
answers go back framed, in the order the frames arrived on that connection. Frames of one
connection are delivered concurrently (up to ``_PIPELINE_DEPTH``) so a pipelining sender
shares group commits too; the answers are still written strictly in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from typing import Any

from adapters.base import Block, Deliver, Origin, Ready, format_address
from adapters.errors import BindError
from adapters.mllp.framing import (
    EndOfStream,
    Frame,
    Framer,
    Garbage,
    NeedData,
    OversizeFrame,
    TruncatedFrame,
    encode_frame,
)
from adapters.tls import server_context
from edge.config.model import MLLPListenerSettings
from edge.metrics import Metrics

log = logging.getLogger(__name__)

_READ_SIZE = 256 * 1024
_PIPELINE_DEPTH = 64  # frames in flight per connection before we stop reading
# (time the frame was complete, its pending answer); None closes the responder.
_Responses = asyncio.Queue[tuple[float, "asyncio.Future[bytes | None]"] | None]


class MLLPListener:
    def __init__(self, settings: MLLPListenerSettings, metrics: Metrics) -> None:
        self.name = settings.name
        self._settings = settings
        self._metrics = metrics
        self._allow = [ipaddress.ip_network(c, strict=False) for c in settings.allow]
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._accepting = True
        self.bound: list[str] = []

    # -- Adapter interface -------------------------------------------------------------

    async def run(self, deliver: Deliver, ready: Ready) -> None:
        self._deliver = deliver
        settings = self._settings
        context: ssl.SSLContext | None = server_context(settings.tls) if settings.tls else None
        try:
            self._server = await asyncio.start_server(
                self._on_connection, settings.bind.host, settings.bind.port, ssl=context,
                limit=_READ_SIZE, reuse_address=True,
                ssl_handshake_timeout=10.0 if context else None)
        except OSError as exc:
            raise BindError(f"listener {self.name}", str(settings.bind), exc) from None
        self.bound = [format_address(sock.getsockname()) for sock in self._server.sockets]
        log.info("listening", extra={"fields": {"listener": self.name,
                                                "bound": ",".join(self.bound),
                                                "tls": context is not None}})
        ready(self.bound)
        await self._closed.wait()

    async def aclose(self, timeout: float) -> None:
        self._accepting = False
        if self._server is not None:
            self._server.close()
        if self._connections:
            # In-flight frames finish and get their ACKs; idle connections are cut at once.
            _, pending = await asyncio.wait(self._connections, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._closed.set()

    def update(self, settings: MLLPListenerSettings) -> bool:
        """Apply a reloaded config in place when the socket need not change. Returns False
        when it must be rebound (address or TLS changed)."""
        if settings.bind != self._settings.bind or settings.tls != self._settings.tls:
            return False
        self._settings = settings
        self._allow = [ipaddress.ip_network(c, strict=False) for c in settings.allow]
        return True

    def describe(self) -> dict[str, object]:
        return {"connections": len(self._connections), "tls": self._settings.tls is not None,
                "ack": self._settings.ack}

    # -- connections -------------------------------------------------------------------

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = format_address(peername) if peername else "unknown"
        refusal = self._refusal(peername)
        if refusal:
            self._metrics.refused.labels(self.name, refusal).inc()
            log.warning("connection refused", extra={"fields": {"listener": self.name,
                                                                "peer": peer,
                                                                "reason": refusal}})
            writer.transport.abort()
            return
        task = asyncio.create_task(self._serve(reader, writer, peer), name=f"mllp:{peer}")
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    def _refusal(self, peername: Any) -> str:
        if not self._accepting:
            return "shutting-down"
        if len(self._connections) >= self._settings.max_connections:
            return "connection-limit"
        try:
            address = ipaddress.ip_address(peername[0].split("%")[0])
        except (TypeError, ValueError, IndexError):
            return "unknown-address"
        if not any(address in network for network in self._allow):
            return "not-allowed"
        return ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str) -> None:
        origin = Origin(self.name, peer, _tls_subject(writer))
        framer = Framer(self._settings.max_frame_bytes)
        responses: _Responses = asyncio.Queue(_PIPELINE_DEPTH)
        self._metrics.connections.labels(self.name).inc()
        log.info("connection opened", extra={"fields": {"listener": self.name, "peer": peer}})
        responder = asyncio.create_task(self._respond(responses, writer))
        reason = "closed by peer"
        try:
            while True:
                settings = self._settings
                timeout = settings.frame_timeout_s if framer.in_block else settings.idle_timeout_s
                try:
                    data = await asyncio.wait_for(reader.read(_READ_SIZE), timeout)
                except TimeoutError:
                    reason = "frame timeout" if framer.in_block else "idle timeout"
                    if framer.in_block:
                        self._metrics.frame_errors.labels(self.name, "timeout").inc()
                    break
                if not data:
                    framer.feed_eof()
                else:
                    framer.feed(data)
                if not await self._dispatch(framer, origin, responses) or responder.done():
                    break
                if not data:
                    break
        except (ConnectionError, ssl.SSLError) as exc:
            reason = type(exc).__name__
        finally:
            # Every frame read has its answer written (or the peer is gone) before closing.
            if not responder.done():
                await responses.put(None)
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await responder
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5.0)
            self._metrics.connections.labels(self.name).dec()
            log.info("connection closed", extra={"fields": {"listener": self.name, "peer": peer,
                                                            "reason": reason}})

    async def _dispatch(self, framer: Framer, origin: Origin,
                        responses: _Responses) -> bool:
        """Turn framer events into deliveries. Returns False at end of stream."""
        for event in framer.events():
            if isinstance(event, Frame):
                await self._enqueue(responses, Block(event.payload, origin))
            elif isinstance(event, OversizeFrame):
                self._metrics.frame_errors.labels(self.name, "oversize").inc()
                await self._enqueue(responses, Block(b"", origin, dropped_bytes=event.nbytes))
            elif isinstance(event, Garbage):
                self._metrics.frame_errors.labels(self.name, "garbage").inc()
                log.warning("bytes outside any MLLP block skipped",
                            extra={"fields": {"listener": self.name, "peer": origin.peer,
                                              "bytes": event.nbytes}})
            elif isinstance(event, TruncatedFrame):
                # Never acknowledged: the sender did not finish it and must send it again.
                self._metrics.frame_errors.labels(self.name, "truncated").inc()
                log.warning("truncated MLLP block discarded",
                            extra={"fields": {"listener": self.name, "peer": origin.peer,
                                              "bytes": event.nbytes}})
            elif isinstance(event, EndOfStream):
                return False
            elif isinstance(event, NeedData):
                break
        return True

    async def _enqueue(self, responses: _Responses, block: Block) -> None:
        started = asyncio.get_running_loop().time()
        await responses.put((started, asyncio.ensure_future(self._deliver(block))))

    async def _respond(self, responses: _Responses, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while (item := await responses.get()) is not None:
            started, pending = item
            answer = await pending
            if answer is None:
                continue
            writer.write(encode_frame(answer))
            await writer.drain()
            self._metrics.ack_latency.labels(self.name).observe(loop.time() - started)


def _tls_subject(writer: asyncio.StreamWriter) -> str:
    cert = writer.get_extra_info("peercert")
    if not cert:
        return ""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


