"""A local Ethereum node (anvil, from npm) for tests and benchmarks: started on port 0,
ready when its JSON-RPC answers, stopped by its PID.

``npm ci`` at the repository root installs anvil under ``node_modules``: package.json pins
``@foundry-rs/anvil-linux-amd64``, the native Linux x64 binary that the ``@foundry-rs/anvil``
wrapper would pull in (see package.json for why the wrapper itself is not used). We run the
binary directly, not a Node wrapper, so the PID we hold is the node's own.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from ledger_client.errors import LedgerError

REPO_ROOT = Path(__file__).resolve().parent.parent
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_LISTENING = re.compile(r"Listening on ([0-9.]+):(\d+)")


def anvil_binary(root: Path = REPO_ROOT) -> Path:
    """The anvil executable installed by ``npm ci`` under ``root/node_modules``."""
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    native = root / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    if native.is_file():
        return native
    wrapper = root / "node_modules" / ".bin" / "anvil"
    if wrapper.is_file():
        return wrapper
    raise LedgerError(f"anvil not found under {root / 'node_modules'}: run `npm ci` first")


def _drain(src: IO[bytes], dst: IO[bytes]) -> None:
    with dst:
        for chunk in iter(lambda: src.read1(65536), b""):  # type: ignore[attr-defined]
            dst.write(chunk)


class AnvilNode:
    """One anvil process. ``start()`` binds port 0 the first time and reuses that port on
    a restart; with ``state_file`` the chain survives a stop and a start (anvil dumps its
    state on SIGTERM and loads it at start)."""

    def __init__(self, workdir: Path, *, args: tuple[str, ...] = (),
                 state_file: Path | None = None, binary: Path | None = None) -> None:
        self.workdir = workdir
        self.args = args
        self.state_file = state_file
        self.binary = binary or anvil_binary()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 50) -> None:
        self._starts += 1
        log_path = self.workdir / f"anvil-{self._starts}.log"
        cmd = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        if self.state_file is not None:
            cmd += ["--state", str(self.state_file)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
        self.proc = proc
        assert proc.stdout is not None
        out = log_path.open("wb")
        port = 0
        # Block on anvil's own output until it says where it listens (no polling, no sleep).
        for line in iter(proc.stdout.readline, b""):
            out.write(line)
            match = _LISTENING.search(line.decode(errors="replace"))
            if match:
                port = int(match.group(2))
                break
        if not port:
            out.close()
            self.stop()
            raise LedgerError(f"anvil did not start; see {log_path}")
        self.port = port
        # anvil logs every request: keep draining its output so a full pipe never stalls it.
        threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True).start()
        for _ in range(attempts):  # the socket is bound; ready when the JSON-RPC answers
            try:
                self.rpc("eth_chainId")
                return
            except (OSError, urllib.error.URLError):
                if proc.poll() is not None:
                    break
        self.stop()
        raise LedgerError(f"anvil did not answer; see {log_path}")

    def rpc(self, method: str, *params: Any) -> Any:
        """A raw JSON-RPC call (test helpers: anvil_mine, anvil_setBalance, ...)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": list(params)}).encode()
        req = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
            self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
            answer = json.loads(resp.read())
        if "error" in answer:
            raise LedgerError(f"anvil {method}: {answer['error']}")
        return answer["result"]

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (anvil dumps its state), then SIGKILL if it does not exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
