"""MLLP ingest: messages/s and ACK latency at 1, 4 and 16 connections.

Ours: the real daemon (subprocess, fresh instance, durable group commit, encrypted inbox).
Baseline, in the same run: python-hl7's asyncio MLLP server answering ACK and storing nothing.
Both are driven by the same client code; each connection sends one message, waits for its
ACK, sends the next (how interface engines behave). Prints ratios; asserts nothing.

Targets (issue 3): at 4 and 16 connections ours ≥ 0.8x the baseline's throughput; at 1
connection p99 ACK latency ≤ 2 ms.

    .venv/bin/python bench/mllp_ingest.py [--seconds 5] [--connections 1,4,16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _figures import record  # noqa: E402

from adapters.mllp.client import parse_ack  # noqa: E402

MESSAGE = (
    "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|HIE|EDGE|202601011200||ADT^A01^ADT_A01|{id}|P|2.5.1\r"
    "EVN|A01|202601011200\r"
    "PID|1||PATID1234^^^HOSP^MR~123456789^^^USSSA^SS||EVERYMAN^ADAM^A^III||19610615|M||2106-3|"
    "2222 HOME STREET^^GREENSBORO^NC^27401-1020|GL|(555) 555-2004|(555)555-2004||S||"
    "PATID12345001^2^M10^ADT1^AN^A|444333333|987654^NC\r"
    "NK1|1|NUCLEAR^NELDA^W|SPO^SPOUSE||||NK^NEXT OF KIN\r"
    "PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A|||SUR||||ADM|A0|\r"
    "AL1|1||^ASPIRIN\r"
    "DG1|1|I10|I10^Essential hypertension^I10|||A\r"
)

BASELINE_SERVER = r"""
import asyncio, sys
import hl7.mllp

async def handle(reader, writer):
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def _wait_notify(sock: socket.socket, timeout: float = 60) -> None:
    sock.settimeout(timeout)
    while b"READY=1" not in sock.recv(65536):
        pass


def start_ours(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    from edge.instance import InitOptions, init_instance

    config = init_instance(workdir / "inst", InitOptions(mllp_port=0, admin_port=0, fhir_port=0))
    text = config.read_text().replace('level = "info"', 'level = "warning"')
    config.write_text(text + '\n[logging]\nlevel = "warning"\n')
    notify_path = workdir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_notify(notify)
    notify.close()
    import json

    runtime = json.loads((workdir / "inst" / "data" / "daemon.json").read_text())
    return proc, int(runtime["listeners"]["adt"][0].rsplit(":", 1)[1])


def start_baseline() -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


class _LoadClient(asyncio.Protocol):
    """A deliberately thin MLLP load generator: one message in flight, ACK recognised by its
    trailer. The full client (adapters.mllp.client) costs more CPU per message than the
    servers under test, and on two cores that would measure the client, not the server."""

    def __init__(self) -> None:
        self.buffer = b""
        self.waiter: asyncio.Future[bytes] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\x1c\r")
        if end >= 0 and self.waiter is not None and not self.waiter.done():
            frame, self.buffer = self.buffer[: end], self.buffer[end + 2 :]
            self.waiter.set_result(frame)

    async def send(self, payload: bytes) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(b"\x0b" + payload + b"\x1c\r")
        return await self.waiter


async def drive(port: int, connections: int, seconds: float, tag: str
                ) -> tuple[int, list[float]]:
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds
    loop = asyncio.get_running_loop()

    async def one(conn: int) -> None:
        nonlocal count
        transport, client = await loop.create_connection(_LoadClient, "127.0.0.1", port)
        sent = 0
        try:
            while time.perf_counter() < deadline:
                payload = MESSAGE.format(id=f"{tag}-{conn}-{sent}").encode()
                start = time.perf_counter()
                answer = await client.send(payload)
                latencies.append(time.perf_counter() - start)
                if b"MSA|AA|" not in answer:
                    raise RuntimeError("not accepted: " + parse_ack(answer.lstrip(b"\x0b")).code)
                sent += 1
                count += 1
        finally:
            transport.close()

    began = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(connections)))
    elapsed = time.perf_counter() - began
    return int(count / elapsed), latencies


def fsync_floor(directory: Path, samples: int = 300) -> list[float]:
    """What one durable commit costs on this disk at least: write 4 KiB + fsync, timed.
    The 1-connection ACK latency of any durable server sits on top of this."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    times = []
    try:
        for _ in range(samples):
            os.write(fd, b"x" * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return times


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", default="1,4,16",
                        help="comma-separated connection counts (default 1,4,16)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hie-bench-"))
    ours, our_port = start_ours(workdir)
    base, base_port = start_baseline()
    try:
        print(f"{'conns':>5} {'ours msg/s':>11} {'base msg/s':>11} {'ratio':>6} "
              f"{'ours p50':>9} {'ours p99':>9} {'base p50':>9} {'base p99':>9}  (ms)")
        for connections in (int(c) for c in args.connections.split(",")):
            asyncio.run(drive(our_port, connections, 0.5, f"warm{connections}"))
            asyncio.run(drive(base_port, connections, 0.5, f"warm{connections}"))
            o_rate, o_lat = asyncio.run(drive(our_port, connections, args.seconds,
                                              f"o{connections}"))
            b_rate, b_lat = asyncio.run(drive(base_port, connections, args.seconds,
                                              f"b{connections}"))
            print(f"{connections:>5} {o_rate:>11,} {b_rate:>11,} {o_rate / b_rate:>6.2f} "
                  f"{pct(o_lat, .5):>9.3f} {pct(o_lat, .99):>9.3f} "
                  f"{pct(b_lat, .5):>9.3f} {pct(b_lat, .99):>9.3f}")
            record("mllp_ingest", f"{connections} connection(s): durable ACKs", o_rate, "msg/s",
                   baseline="python-hl7 ACK-only server", baseline_value=b_rate)
            record("mllp_ingest", f"{connections} connection(s): p99 latency", pct(o_lat, .99),
                   "ms", baseline="python-hl7 ACK-only server p99",
                   baseline_value=pct(b_lat, .99), higher_is_better=False)
        print(f"median ours/base latency at the end: "
              f"{statistics.median(o_lat) / statistics.median(b_lat):.2f}x")
        floor = fsync_floor(workdir)
        print(f"disk floor (4 KiB write + fsync) in the same run: p50 {pct(floor, .5):.3f} ms, "
              f"p99 {pct(floor, .99):.3f} ms")
    finally:
        for proc in (ours, base):
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
