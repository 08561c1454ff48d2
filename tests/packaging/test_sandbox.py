"""The daemon works inside the unit's sandbox. systemd is not PID 1 here, so the parts of the
sandbox that could break a Python daemon at run time are applied the way systemd 252 applies
them (seccomp, see sandbox_exec.py): the system call filter, MemoryDenyWriteExecute= (does
CPython with cryptography/cffi need writable+executable memory? this answers it) and
RestrictAddressFamilies=. The daemon then starts, takes a message over MLLP, answers /status,
reloads on SIGHUP and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.instance import InitOptions, init_instance

from .conftest import require_tool, run

SANDBOX = Path(__file__).with_name("sandbox_exec.py")
MLLP_START, MLLP_END = b"\x0b", b"\x1c\r"
# Synthetic test data (no real patient).
MESSAGE = (b"MSH|^~\\&|TESTSND|TESTFAC|HIE|TESTFAC|20240101120000||ADT^A01|SANDBOX1|P|2.5\r"
           b"EVN|A01|20240101120000\r"
           b"PID|1||TEST0001^^^HOSP^MR||TEST^PATIENT||19700101|U\r"
           b"PV1|1|I\r")


def syscall_groups() -> dict[str, list[str]]:
    """Every group ``systemd-analyze syscall-filter`` knows, with its members."""
    out = run([require_tool("systemd-analyze"), "syscall-filter", "--no-pager"]).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def expand(groups: dict[str, list[str]], name: str) -> set[str]:
    if not name.startswith("@"):
        return {name}
    return set().union(*(expand(groups, member) for member in groups[name]))


def allowed_syscalls() -> set[str]:
    """What ``SystemCallFilter=@system-service`` + ``~@privileged @resources`` allows."""
    groups = syscall_groups()
    return (expand(groups, "@system-service") - expand(groups, "@privileged")
            - expand(groups, "@resources"))


@pytest.fixture(scope="module")
def syscalls_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seccomp") / "allowed.txt"
    allowed = allowed_syscalls()
    # Sanity: the groups parsed; things the daemon must do are in, privileged ones are out.
    assert {"read", "write", "epoll_wait", "socket", "bind", "fsync"} <= allowed
    assert not {"setuid", "setrlimit", "sched_setaffinity", "chown"} & allowed
    path.write_text("\n".join(sorted(allowed)) + "\n")
    return path


def sandboxed(syscalls: Path, *command: str) -> list[str]:
    return [sys.executable, str(SANDBOX), str(syscalls), "--", *command]


PROBE = """
import errno, mmap, os, socket
def refused(what, call, code):
    try:
        call()
    except OSError as exc:
        assert exc.errno == code, (what, exc.errno)
        print("refused", what)
    else:
        raise SystemExit(f"{what} was allowed")
refused("W+X mmap", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE
                                     | mmap.PROT_EXEC), errno.EPERM)
refused("AF_NETLINK", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW), errno.EAFNOSUPPORT)
refused("AF_PACKET", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW), errno.EAFNOSUPPORT)
refused("@resources", lambda: os.sched_setaffinity(0, {0}), errno.EPERM)
refused("@privileged", lambda: os.setuid(os.getuid()), errno.EPERM)
socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE).close()
print("ordinary calls work")
"""


def test_sandbox_refuses_what_the_unit_refuses(syscalls_file: Path) -> None:
    # Without this, a daemon "passing" in the sandbox could mean the sandbox did nothing.
    result = subprocess.run(sandboxed(syscalls_file, sys.executable, "-c", PROBE),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("refused") == 5
    assert "ordinary calls work" in result.stdout


class Notify:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: list[str] = []

    def wait_for(self, key: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        self.sock.settimeout(1.0)
        for _ in range(int(timeout)):
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited {proc.returncode} before {key}")
            try:
                fields = self.sock.recv(65536).decode().split("\n")
            except TimeoutError:
                continue
            self.seen += fields
            if key in fields:
                return
        raise AssertionError(f"no {key} within {timeout} s; saw {self.seen}")


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notify]:
    n = Notify(tmp_path / "notify.sock")
    yield n
    n.sock.close()


def mllp_exchange(address: str, message: bytes) -> bytes:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=30) as conn:
        conn.sendall(MLLP_START + message + MLLP_END)
        reply = b""
        while not reply.endswith(MLLP_END):
            chunk = conn.recv(65536)
            assert chunk, "connection closed before the ACK"
            reply += chunk
    return reply


def test_daemon_runs_in_the_sandbox(tmp_path: Path, syscalls_file: Path,
                                    notify: Notify) -> None:
    config = init_instance(tmp_path / "inst", InitOptions(mllp_port=0, admin_port=0, fhir_port=0))
    log_path = tmp_path / "daemon.log"
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    env.pop("JOURNAL_STREAM", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            sandboxed(syscalls_file, sys.executable, "-m", "edge", "run", "--config",
                      str(config)), env=env, stdout=log, stderr=log)
    try:
        notify.wait_for("READY=1", proc)
        runtime = json.loads((tmp_path / "inst" / "data" / "daemon.json").read_text())
        reply = mllp_exchange(runtime["listeners"]["adt"][0], MESSAGE)
        assert b"MSA|AA|SANDBOX1" in reply or b"MSA|CA|SANDBOX1" in reply, reply
        with urllib.request.urlopen(f"http://{runtime['admin'][0]}/status", timeout=30) as r:
            status = json.load(r)
        assert status["inbox"]["received"] >= 1
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1", proc)
        notify.wait_for("READY=1", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    log_text = log_path.read_text(errors="replace")
    assert "Operation not permitted" not in log_text, log_text
    assert "PermissionError" not in log_text, log_text
