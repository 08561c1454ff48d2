"""The daemon's lifecycle (design.md, "examples to follow" 5).

Phases, in order: load config → open storage → start every configured listener → READY (only
once all are bound) → serve → on SIGTERM/SIGINT: stop accepting, finish in-flight work up to
``daemon.shutdown_timeout_s``, flush the writer, STOPPING → exit 0. SIGHUP re-reads the
config; a bad new config keeps the old one running and says why in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.base import Adapter
from edge import __version__
from edge.admin.server import AdminServer
from edge.astm.profile import DeviceProfile
from edge.certificates import days_left
from edge.config import ConfigError, Settings, load_config
from edge.crypto.keys import load_keyring
from edge.daemon.notify import Notifier, watchdog_interval
from edge.heap import freeze_startup_heap
from edge.housekeeping import check_silence, prune_raw_messages
from edge.inbox.sealing import InboxSealer
from edge.inbox.store import InboxStore
from edge.intake.service import IntakeService
from edge.ledger_settings import backend_options
from edge.logs import configure as configure_logging
from edge.metrics import Metrics
from edge.normalize.context import NormalizeContext
from edge.processing.processor import Processor
from edge.storage.database import connect, database_path, migrate
from edge.storage.errors import StorageError
from edge.storage.group_commit import GroupCommitter
from edge.store.keys import StoreKeys
from ledger_client.service import Ledger

if TYPE_CHECKING:
    from edge.fhirapi.runtime import FHIRRuntime
    from edge.peer.runtime import PeerRuntime

log = logging.getLogger(__name__)

RUNTIME_FILE = "daemon.json"  # under storage.dir: pid and bound addresses, while running


class Daemon:
    def __init__(self, config_path: Path, settings: Settings, *,
                 notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.started_monotonic = time.monotonic()
        self.started_wall = time.time()
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._adapters: dict[str, Adapter] = {}
        self._adapter_tasks: dict[str, asyncio.Task[None]] = {}
        self._bound: dict[str, list[str]] = {}
        self._committer: GroupCommitter | None = None
        self._intake: IntakeService | None = None
        self._admin: AdminServer | None = None
        self._background: list[asyncio.Task[None]] = []
        self._ledger: Ledger | None = None
        self._processor: Processor | None = None
        self._peer: PeerRuntime | None = None
        self._fhir: FHIRRuntime | None = None
        self._inbox: InboxStore | None = None
        self._keys: StoreKeys | None = None
        self.exit_status = 0
        self._executor: ProcessPoolExecutor | None = None

    # -- phases -------------------------------------------------------------------------

    def request_stop(self) -> None:
        """What SIGTERM does: begin a graceful shutdown."""
        self._stop.set()

    def request_reload(self) -> None:
        """What SIGHUP does."""
        self._reload_requested.set()

    async def run(self, *, install_signals: bool = True,
                  ready: asyncio.Event | None = None, own_process: bool = False) -> int:
        """Serve until stopped. ``ready`` (for in-process use) is set with READY=1.
        ``own_process``: the daemon is this process's only tenant (``hie-edge run``), so its
        startup heap is frozen once it serves (:mod:`edge.heap`: a full collection of it
        took ~15 ms, a stall of every ACK and commit waiting meanwhile)."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            await self._open_storage()
            await self._start_listeners()
            await self._start_admin()
            self._write_runtime_file()
            if own_process:
                freeze_startup_heap()
            self.notifier.ready(self._status_line())
            if ready is not None:
                ready.set()
            log.info("ready", extra={"fields": {"facility": self.settings.facility.id,
                                                "listeners": len(self._adapters)}})
            self._background.append(asyncio.create_task(self._housekeeping(),
                                                        name="housekeeping"))
            interval = watchdog_interval()
            if interval is not None:
                self._background.append(asyncio.create_task(self._watchdog(interval),
                                                            name="watchdog"))
            await self._serve()
        finally:
            if install_signals:
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(signum)
            await self._shutdown()
        return self.exit_status

    async def _open_storage(self) -> None:
        storage_dir = self.settings.storage.dir
        storage_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = database_path(storage_dir)
        conn = connect(path)
        try:
            migrate(conn)
        finally:
            conn.close()
        self._committer = GroupCommitter(path, max_batch=self.settings.storage.group_commit_max)
        self._committer.start()
        self._ledger = _open_ledger(self.settings, path)
        await _check_chain(self._ledger, self.config_path)
        keys = StoreKeys(lambda: load_keyring(self.settings.keys.kek_file))
        conn = connect(path)
        try:
            sealer = InboxSealer(keys, conn)
        finally:
            conn.close()
        # Workers start on first use; forkserver, because forking a process that runs the
        # writer thread could copy a held lock into the child. They run at a lower priority
        # (nice 10): conversion is deferred work, acknowledging senders is not.
        self._executor = ProcessPoolExecutor(
            max_workers=max(1, min(2, os.cpu_count() or 1)),
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_worker_setup, initargs=(os.getpid(),))
        self._processor = Processor(path, self._committer, keys, sealer,
                                    NormalizeContext.from_settings(self.settings),
                                    self._executor, profiles=_device_profiles(self.settings),
                                    on_appended=self._ledger.anchorer.notify)
        self._keys = keys
        self._inbox = InboxStore(self._committer, sealer)
        self._intake = IntakeService(self.settings, self._inbox,
                                     self._committer, self.metrics, self._processor)
        self._background.append(asyncio.create_task(self._ledger.anchorer.run(),
                                                    name="anchorer"))
        self._background.append(asyncio.create_task(self._processor.run(), name="processor"))

    async def _start_listeners(self) -> None:
        for listener in self.settings.mllp:
            await self._start_adapter(_build_mllp(listener, self.metrics))
        for line in self.settings.serial:
            await self._start_adapter(_build_serial(line, self.metrics))
        if self.settings.peer is not None:
            await self._start_peer()
        if self.settings.fhir is not None:
            await self._start_fhir()

    async def _start_fhir(self) -> None:
        # Imported only when [fhir] is configured (design.md: adapters load on demand).
        from edge.fhirapi.runtime import FHIRRuntime

        assert self.settings.fhir is not None and self._committer is not None
        assert self._inbox is not None and self._processor is not None
        assert self._keys is not None and self._ledger is not None
        self._fhir = FHIRRuntime(self.settings.fhir, database_path(self.settings.storage.dir),
                                 self._committer, self._inbox, self._processor, self._keys,
                                 facility=self.settings.facility.id,
                                 on_appended=self._ledger.anchorer.notify)
        self._bound["fhir"] = await self._fhir.start()
        for name, coroutine in self._fhir.background():
            self._background.append(asyncio.create_task(coroutine, name=name))

    async def _start_peer(self) -> None:
        # Imported only when [peer] is configured (design.md: adapters load on demand).
        from edge.peer.runtime import PeerRuntime

        assert self._committer is not None and self._ledger is not None
        self._peer = PeerRuntime(self.settings, database_path(self.settings.storage.dir),
                                 self._committer, self._ledger.anchorer)
        self._bound["peer"] = await self._peer.start()
        for name, coroutine in self._peer.background():
            self._background.append(asyncio.create_task(coroutine, name=name))

    async def _start_adapter(self, adapter: Adapter) -> None:
        assert self._intake is not None
        bound: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

        def ready(addresses: list[str]) -> None:
            if not bound.done():
                bound.set_result(addresses)

        task = asyncio.create_task(adapter.run(self._intake.deliver, ready),
                                   name=f"adapter:{adapter.name}")
        # A listener that fails to bind ends its task with the error: surface it here.
        racers: set[asyncio.Future[Any]] = {task, bound}
        done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise RuntimeError(f"listener {adapter.name} stopped before it was ready")
        self._adapters[adapter.name] = adapter
        self._adapter_tasks[adapter.name] = task
        self._bound[adapter.name] = bound.result()

    async def _start_admin(self) -> None:
        bind = self.settings.admin.bind
        self._admin = AdminServer(bind.host, bind.port, metrics=self.metrics,
                                  status=self.status, readiness=self.readiness)
        await self._admin.start()

    async def _serve(self) -> None:
        while not self._stop.is_set():
            stop = asyncio.create_task(self._stop.wait())
            reload = asyncio.create_task(self._reload_requested.wait())
            # A listener or a stage ending on its own is a fault (see below).
            crashed: list[asyncio.Task[Any]] = [*self._adapter_tasks.values(),
                                                *self._background]
            done, _ = await asyncio.wait({stop, reload, *crashed},
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in (stop, reload):
                if task not in done:
                    task.cancel()
            for task in done & set(crashed):
                # Stop, so systemd restarts us (Restart=on-failure) instead of running
                # half a service.
                exc = task.exception() if not task.cancelled() else None
                self.exit_status = 70
                log.error("task stopped unexpectedly",
                          extra={"fields": {"task": task.get_name(),
                                            "error": type(exc).__name__ if exc else "none"}})
                self._stop.set()
            if self._reload_requested.is_set() and not self._stop.is_set():
                self._reload_requested.clear()
                await self.reload()

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping")
        timeout = self.settings.daemon.shutdown_timeout_s
        # The anchorer and the processor finish the round in progress, then return.
        if self._ledger is not None:
            self._ledger.anchorer.stop()
        if self._processor is not None:
            self._processor.stop()
        for task in self._background:
            if task.get_name() not in ("anchorer", "processor"):
                task.cancel()
        # Stop accepting and let in-flight blocks finish (each adapter bounds its own wait).
        await asyncio.gather(*(a.aclose(timeout) for a in self._adapters.values()),
                             return_exceptions=True)
        if self._peer is not None:
            await self._peer.aclose(timeout)
        if self._fhir is not None:
            await self._fhir.aclose(timeout)
        for task in self._adapter_tasks.values():
            task.cancel()
        running = [*self._adapter_tasks.values(), *self._background]
        _, slow = await asyncio.wait(running, timeout=timeout) if running else (set(), set())
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        if self._ledger is not None:
            await self._ledger.aclose()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self._admin is not None:
            await self._admin.aclose()
        if self._intake is not None:
            await self._intake.aclose()
        if self._committer is not None:
            # Runs every queued write before returning: nothing accepted is left in memory.
            await asyncio.to_thread(self._committer.close)
        with contextlib.suppress(FileNotFoundError):
            (self.settings.storage.dir / RUNTIME_FILE).unlink()

    @property
    def bound(self) -> dict[str, list[str]]:
        """Every listener's bound addresses, plus ``admin``."""
        return {**self._bound, "admin": self._admin.bound if self._admin else []}

    # -- reload -------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the config and apply what can change without dropping connections."""
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
            self._check_reloadable(new)
        except ConfigError as exc:
            log.error("reload refused; keeping the running configuration",
                      extra={"fields": {"problems": "; ".join(exc.problems)}})
            self.notifier.ready(self._status_line())
            return False
        old = self.settings
        self.settings = new
        configure_logging(new.logging.level, new.logging.format)
        old_listeners = {item.name: item for item in old.mllp}
        new_listeners = {item.name: item for item in new.mllp}
        for name in old_listeners.keys() - new_listeners.keys():
            await self._stop_adapter(name)
        for name, listener in new_listeners.items():
            previous = old_listeners.get(name)
            if previous is None:
                await self._start_adapter(_build_mllp(listener, self.metrics))
            elif previous != listener:
                adapter = self._adapters[name]
                update = getattr(adapter, "update", None)
                if update is not None and update(listener):
                    continue  # applied in place; open connections keep going
                await self._stop_adapter(name)
                await self._start_adapter(_build_mllp(listener, self.metrics))
        # Serial lines: a changed line is reopened with its new settings.
        old_lines = {item.name: item for item in old.serial}
        new_lines = {item.name: item for item in new.serial}
        for name, line in old_lines.items():
            if new_lines.get(name) != line:
                await self._stop_adapter(name)
        for name, line in new_lines.items():
            if old_lines.get(name) != line:
                await self._start_adapter(_build_serial(line, self.metrics))
        assert self._intake is not None and self._processor is not None
        self._intake.update(new)
        self._processor.update(NormalizeContext.from_settings(new), _device_profiles(new))
        if self._peer is not None and new.peer is not None:
            self._peer.update(new.peer)  # directory, consent default, roles, limits
        self._write_runtime_file()
        log.info("reloaded")
        self.notifier.ready(self._status_line())
        return True

    def _check_reloadable(self, new: Settings) -> None:
        fixed = {"facility.id": (self.settings.facility.id, new.facility.id),
                 "storage.dir": (self.settings.storage.dir, new.storage.dir),
                 "admin.bind": (self.settings.admin.bind, new.admin.bind),
                 "keys": (self.settings.keys, new.keys),
                 "fhir": (self.settings.fhir, new.fhir),
                 "peer (adding/removing it, bind, tls, webhook, workers)": (
                     _peer_fixed(self.settings), _peer_fixed(new))}
        changed = [key for key, (a, b) in fixed.items() if a != b]
        if changed:
            raise ConfigError(str(self.config_path),
                              [f"{key}: cannot change on reload; restart the service"
                               for key in changed])

    async def _stop_adapter(self, name: str) -> None:
        adapter = self._adapters.pop(name)
        await adapter.aclose(self.settings.daemon.shutdown_timeout_s)
        task = self._adapter_tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._bound.pop(name, None)

    # -- health -------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Silent feeds (every 10 s) and raw-message retention (hourly)."""
        ticks = 0
        while True:
            check_silence(self.settings, self.metrics, self.started_wall)
            days = self.settings.storage.raw_retention_days
            if days and ticks % 360 == 0 and self._committer is not None:
                await self.prune_raw_messages(days)
            ticks += 1
            await asyncio.sleep(10)

    async def prune_raw_messages(self, days: int) -> int:
        """Apply the retention policy now, a batch per transaction. Returns rows pruned."""
        assert self._committer is not None
        total = 0
        while pruned := await self._committer.run(prune_raw_messages(days), background=True):
            total += pruned
            self.metrics.raw_pruned.inc(pruned)
        if total:
            log.info("raw messages pruned", extra={"fields": {"rows": total, "days": days}})
        return total

    async def _watchdog(self, interval: float) -> None:
        while True:
            if await self._storage_healthy():
                self.notifier.watchdog()
            else:
                log.warning("storage unhealthy: withholding the watchdog ping")
            await asyncio.sleep(interval)

    async def _storage_healthy(self) -> bool:
        if self._committer is None:
            return False
        try:
            await asyncio.wait_for(self._committer.run(lambda c: c.execute("SELECT 1")), 5.0)
        except (StorageError, TimeoutError):
            return False
        return True

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        listeners_ok = all(self._bound.get(a.name) for a in self.settings.mllp)
        if self.settings.peer is not None:
            listeners_ok = listeners_ok and bool(self._bound.get("peer"))
        if self.settings.fhir is not None:
            listeners_ok = listeners_ok and bool(self._bound.get("fhir"))
        storage_ok = await self._storage_healthy()
        ready = listeners_ok and storage_ok and not self._stop.is_set()
        # An unreachable ledger degrades the service but does not make it unready: intake
        # goes on and anchors catch up later (issue 6).
        ledger_ok = await self._ledger.anchorer.probe() if self._ledger else False
        return ready, {"listeners": listeners_ok, "storage": storage_ok,
                       "ledger": "ok" if ledger_ok else "degraded"}

    async def status(self) -> dict[str, Any]:
        assert self._intake is not None
        return {
            "version": __version__,
            "facility": self.settings.facility.id,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started_monotonic, 3),
            "admin": self._admin.bound if self._admin else [],
            "listeners": [
                {"name": name, "kind": "mllp", "bound": self._bound.get(name, []),
                 **self._adapters[name].describe()}
                for name in self._adapters
            ],
            "inbox": await self._intake.counts(),
            "processing": ({**self._processor.counts, "last_error": self._processor.last_error}
                           if self._processor else {}),
            "ledger": self._ledger_status(),
            "certificates_days_left": days_left(self.settings),
            "peer": self._peer.status() if self._peer is not None else None,
            "fhir": self._fhir.status() if self._fhir is not None else None,
        }

    def _ledger_status(self) -> dict[str, Any]:
        if self._ledger is None:
            return {}
        status = self._ledger.anchorer.status()
        return {"backend": status.backend, "reachable": status.backend_reachable,
                "log_size": status.log_size, "last_anchored_size": status.last_anchored_size,
                "last_anchored_at": status.last_anchored_at,
                "leaves_pending": status.leaves_pending,
                "checkpoints_pending": status.checkpoints_pending,
                "last_error": status.last_error}

    def _status_line(self) -> str:
        parts = [f"{name} on {','.join(addrs)}" for name, addrs in self._bound.items()]
        return "serving " + ("; ".join(parts) if parts else "(no listeners)")

    def _write_runtime_file(self) -> None:
        info = {"pid": os.getpid(), "version": __version__,
                "admin": self._admin.bound if self._admin else [],
                "listeners": self._bound}
        path = self.settings.storage.dir / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        tmp.replace(path)


def _build_mllp(listener: Any, metrics: Metrics) -> Adapter:
    # Imported only when an MLLP listener is configured (design.md: adapters load on demand).
    from adapters.mllp.listener import MLLPListener

    return MLLPListener(listener, metrics)


def _open_ledger(settings: Settings, db_path: Path) -> Ledger:
    from ledger_client.anchorer import AnchorPolicy
    from ledger_client.service import open_ledger

    return open_ledger(db_path, settings.facility.id, settings.keys.signing_key_file,
                       backend=settings.ledger.backend, backend_options=backend_options(settings),
                       policy=AnchorPolicy(interval_s=settings.ledger.anchor_interval_s))


def _peer_fixed(settings: Settings) -> Any:
    """The parts of ``[peer]`` a reload cannot change (the listener, its TLS files, the
    webhook, the number of worker processes)."""
    peer = settings.peer
    return None if peer is None else (peer.bind, peer.tls, peer.webhook, peer.workers)


def _worker_setup(daemon_pid: int) -> None:
    """In each worker process: a lower priority, and an exit when the daemon dies.

    Workers run at nice 10 when allowed (under systemd's SystemCallFilter without @resources,
    setpriority(2) is refused and they keep the service's priority). A worker blocks on its
    call queue, whose write end it holds itself, so it would never notice a SIGKILLed daemon;
    a thread waits on a pidfd of the daemon (Linux 5.3+) and ends the worker with it.
    """
    with contextlib.suppress(OSError):
        os.nice(10)
    try:
        pidfd = os.pidfd_open(daemon_pid)
    except ProcessLookupError:  # the daemon is already gone
        os._exit(0)
    except (OSError, AttributeError):  # no pidfd on this kernel: live with the risk
        return

    def watch() -> None:
        select.select([pidfd], [], [])
        os._exit(0)

    threading.Thread(target=watch, name="daemon-watch", daemon=True).start()


def _device_profiles(settings: Settings) -> dict[str, DeviceProfile]:
    """Each ASTM line's instrument quirks, by listener name."""
    return {line.name: DeviceProfile(line.profile.test_code_system,
                                     line.profile.test_code_component, line.profile.units)
            for line in settings.serial if line.protocol == "astm"}


async def _check_chain(ledger: Ledger, config_path: Path) -> None:
    """A node on another chain than configured is a config error; a node that is down is not
    (intake goes on, anchors catch up)."""
    if ledger.backend.name != "evm":
        return  # web3 (the evm extra) is imported only for an EVM ledger
    from ledger_client.backends.evm import EvmBackend
    from ledger_client.errors import AnchorRejected, BackendUnavailable

    assert isinstance(ledger.backend, EvmBackend)
    try:
        await ledger.backend.check_chain()
    except BackendUnavailable:
        log.warning("ledger node unreachable at start; anchoring will catch up")
    except AnchorRejected as exc:
        raise ConfigError(str(config_path), [f"ledger.evm.chain_id: {exc}"]) from None


def _build_serial(line: Any, metrics: Metrics) -> Adapter:
    # Imported only when a serial line is configured (pyserial is loaded there too).
    from adapters.serial.listener import SerialListener

    return SerialListener(line, metrics)


def run_daemon(config_path: Path, settings: Settings) -> int:
    configure_logging(settings.logging.level, settings.logging.format)
    # The writer thread runs CPU-bound Python (canonical JSON, AES-GCM, HMACs) for the
    # processing stage; a shorter GIL switch interval (default 5 ms) bounds how long the event
    # loop, which writes ACKs, can be kept waiting by it.
    sys.setswitchinterval(0.0005)
    return asyncio.run(Daemon(config_path, settings).run(own_process=True))
