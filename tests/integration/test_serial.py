"""Serial lines against the real daemon: a simulated instrument on a pseudo-terminal speaks
ASTM E1381/E1394, an interface engine speaks MLLP over another; every completed message is in
the inbox once, before its acknowledgement. Waits are on replies and state changes only."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from adapters.mllp.client import parse_ack
from adapters.mllp.framing import encode_frame
from adapters.serial.listener import SerialListener
from edge.crypto.blind_index import parse_identifier_token
from edge.crypto.keys import load_keyring
from edge.inbox.schema import TABLE
from edge.inbox.sealing import InboxSealer
from edge.inbox.store import PAYLOAD_VERSION
from edge.storage.database import connect, database_path
from edge.store.keys import PatientRef, StoreKeys
from edge.store.resources import ResourceStore, ResourceVersion
from tests.adapters.serial.astm_support import CHEMISTRY, HEMATOLOGY, LONG, frame
from tests.adapters.serial.instrument import ACK, EOT, Instrument, Pty
from tests.corpus import iter_single_messages
from tests.integration.conftest import RunningDaemon, daemon_with

pytestmark = pytest.mark.timeout(120)


def serial_table(name: str, port: Path, protocol: str, extra: str = "") -> str:
    return (f'\n[[serial]]\nname = "{name}"\nport = "{port}"\nprotocol = "{protocol}"\n'
            f"reconnect_initial_s = 0.05\nreconnect_max_s = 0.2\n{extra}")


def listener(running: RunningDaemon, name: str) -> SerialListener:
    adapter = running.daemon._adapters[name]
    assert isinstance(adapter, SerialListener)
    return adapter


def inbox(running: RunningDaemon, name: str) -> list[dict[str, Any]]:
    """Rows of one listener, payloads decrypted."""
    settings = running.settings
    conn = connect(database_path(settings.storage.dir))
    try:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute(
            f"SELECT * FROM {TABLE} WHERE listener = ? ORDER BY id", (name,))]
        sealer = InboxSealer(StoreKeys(lambda: load_keyring(settings.keys.kek_file)), conn)
        for row in rows:
            row["raw"] = sealer.open(conn, TABLE, row["id"], PAYLOAD_VERSION, row["key_id"],
                                     row["payload"])
        return rows
    finally:
        conn.close()


async def test_astm_results_are_stored_once_each_before_the_final_ack(tmp_path: Path) -> None:
    device = tmp_path / "ttyLAB0"
    pty = Pty(device)
    try:
        async with daemon_with(tmp_path / "inst", serial_table("lab", device, "astm")) as run:
            line = listener(run, "lab")
            await line.wait_for_state("connected")
            instrument = Instrument(pty)
            answers = await instrument.session(CHEMISTRY, HEMATOLOGY, corrupt=frozenset({2, 9}))
            assert set(answers) == {ACK}
            # The ACK of each L frame came after the commit: the rows are there now.
            assert [r["raw"] for r in inbox(run, "lab")] == [CHEMISTRY, HEMATOLOGY]
            await instrument.session(LONG, split=5)
            # The instrument missed our last ACK and repeats the whole message: no new row.
            await instrument.session(CHEMISTRY)
            rows = inbox(run, "lab")
            assert [r["raw"] for r in rows] == [CHEMISTRY, HEMATOLOGY, LONG]
            assert {r["message_type"] for r in rows} == {"ASTM^E1394"}
            assert {(r["state"], r["ack_code"]) for r in rows} == {("received", "CA")}
            assert rows[0]["sending_application"] == "CHEM-ANALYZER^2.1^SN4711"
            assert rows[0]["control_id"] == "20260315083000"  # H-14: H-3 is empty
            assert rows[0]["peer"] == f"tty:{device}"
            status = await run.daemon.status()
            [entry] = [item for item in status["listeners"] if item["name"] == "lab"]
            assert entry["kind"] == "serial" and entry["state"] == "connected"
            assert entry["protocol"] == "astm" and entry["naks"] == 2
            assert status["inbox"]["duplicates"] == 1
    finally:
        pty.unplug()


async def test_a_refused_or_unreadable_astm_message_is_kept_as_a_dead_letter(
        tmp_path: Path) -> None:
    device = tmp_path / "ttyLAB1"
    pty = Pty(device)
    qc = CHEMISTRY.replace(b"|P|LIS2-A2|", b"|Q|LIS2-A2|")
    broken = b"P|1||PID-9\rL|1|N\r"  # no H record
    try:
        async with daemon_with(tmp_path / "inst", serial_table("lab", device, "astm")) as run:
            await listener(run, "lab").wait_for_state("connected")
            instrument = Instrument(pty)
            assert set(await instrument.session(qc, broken)) == {ACK}
            rows = inbox(run, "lab")
            assert [(r["state"], r["ack_code"]) for r in rows] == \
                [("dead-letter", "CR"), ("dead-letter", "CR")]
            assert rows[0]["reason"] == "H-12: processing id not accepted by this listener"
            assert rows[1]["reason"] == "record 1: first record is not an H record"
            assert [r["raw"] for r in rows] == [qc, broken]
    finally:
        pty.unplug()


async def test_unplugged_instrument_line_reconnects_under_the_daemon(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB-lab"
    first = Pty(device)
    async with daemon_with(tmp_path / "inst", serial_table("lab", device, "astm")) as run:
        line = listener(run, "lab")
        await line.wait_for_state("connected")
        instrument = Instrument(first)
        assert await instrument.enq() == ACK
        assert await instrument.send_frame(frame(1, CHEMISTRY.split(b"\r")[0] + b"\r")) == ACK
        first.unplug()  # mid-message
        await line.wait_for_state("disconnected")
        status = await run.daemon.status()
        [entry] = [item for item in status["listeners"] if item["name"] == "lab"]
        assert entry["state"] == "disconnected"
        second = Pty(device)
        try:
            await line.wait_for_state("connected")
            assert set(await Instrument(second).session(HEMATOLOGY)) == {ACK}
            assert [r["raw"] for r in inbox(run, "lab")] == [HEMATOLOGY]  # no half message
            assert line.describe()["reconnects"] == 1
        finally:
            second.unplug()


class ProcessedWatch:
    """Counts messages the daemon's processing stage has stored resources for, by hooking
    the callback it already has for that (``on_appended``): waits are on that, not polls."""

    def __init__(self, running: RunningDaemon) -> None:
        processor = running.daemon._processor
        assert processor is not None
        self.count = 0
        self._changed = asyncio.Condition()
        notify = processor._on_appended

        def appended(size: int) -> None:
            notify(size)
            self.count += 1
            asyncio.get_running_loop().create_task(self._notify())

        processor._on_appended = appended

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, count: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.count >= count), 30)


def stored_for(running: RunningDaemon, patient_key: str) -> list[ResourceVersion]:
    """Current resources sealed under one patient, read (and verified) from the store."""
    settings = running.settings
    conn = connect(database_path(settings.storage.dir))
    try:
        store = ResourceStore(StoreKeys(lambda: load_keyring(settings.keys.kek_file)))
        return store.search(conn, patient=PatientRef(*parse_identifier_token(patient_key)))
    finally:
        conn.close()


CORRECTION = (
    b"H|\\^&|||CHEM-ANALYZER^2.1^SN4711|||||LIS||P|LIS2-A2|20260315101500\r"
    b"P|1||PID-1001\r"
    b"O|1|SPEC-5001||^^^K|R|20260315080000|20260315074500||||N||||SERUM||||||||||C\r"
    b"R|1|^^^K^Potassium|4.6|mmol/L|3.5 to 5.1|N||C||OPER1||20260315101000|CHEM1\r"
    b"C|1|L|Recollected: first sample hemolyzed|G\r"
    b"L|1|N\r"
)


async def test_astm_results_are_converted_into_the_store(tmp_path: Path) -> None:
    device = tmp_path / "ttyLAB3"
    pty = Pty(device)
    profile = '[serial.profile]\ntest_code_system = "http://lab.example.org/codes/chem"\n'
    try:
        async with daemon_with(tmp_path / "inst",
                               serial_table("lab", device, "astm", profile)) as run:
            await listener(run, "lab").wait_for_state("connected")
            watch = ProcessedWatch(run)
            instrument = Instrument(pty)
            assert set(await instrument.session(CHEMISTRY)) == {ACK}
            await watch.wait_for(1)
            [row] = inbox(run, "lab")
            assert (row["state"], row["reason"]) == ("processed", None)
            facility = run.settings.facility.id
            key = f"urn:hie-edge:{facility}:id:astm-laboratory-patient-id|PID-1001"
            found = stored_for(run, key)
            observations = {v.resource["code"]["coding"][0]["code"]: v
                            for v in found if v.type == "Observation"}
            assert sorted(observations) == ["GLU", "K", "NA"]
            potassium = observations["K"].resource
            assert potassium["code"]["coding"][0]["system"] == "http://lab.example.org/codes/chem"
            assert potassium["valueQuantity"] == {"value": 5.9, "unit": "mmol/L",
                                                  "system": "http://unitsofmeasure.org",
                                                  "code": "mmol/L"}
            assert potassium["interpretation"][0]["coding"][0]["code"] == "H"
            assert potassium["status"] == "final"
            assert potassium["effectiveDateTime"].startswith("2026-03-15T07:45:00")
            assert potassium["note"][0]["text"] == "Hemolyzed sample; possible elevated potassium"
            types = {v.type for v in found}
            assert {"Patient", "Specimen", "ServiceRequest", "DiagnosticReport",
                    "Observation"} <= types
            [patient] = [v.resource for v in found if v.type == "Patient"]
            assert patient["name"][0]["family"] == "DOE"

            # A correction from the instrument updates the same Observation: a new version.
            assert set(await instrument.session(CORRECTION)) == {ACK}
            await watch.wait_for(2)
            assert [r["state"] for r in inbox(run, "lab")] == ["processed", "processed"]
            corrected = {v.resource["code"]["coding"][0]["code"]: v
                         for v in stored_for(run, key) if v.type == "Observation"}
            assert corrected["K"].id == observations["K"].id
            assert corrected["K"].version == observations["K"].version + 1
            assert corrected["K"].resource["status"] == "corrected"
            assert corrected["K"].resource["valueQuantity"]["value"] == 4.6
            assert corrected["GLU"].version == observations["GLU"].version  # untouched
            # The panel's report still lists all three results; the correction has its own.
            reports = sorted((v.resource for v in stored_for(run, key)
                              if v.type == "DiagnosticReport"), key=lambda r: len(r["result"]))
            assert [(r["status"], len(r["result"])) for r in reports] == \
                [("corrected", 1), ("final", 3)]
    finally:
        pty.unplug()


# -- MLLP over a serial line: the same acknowledgement rules as over TCP ----------------------

ADT = (b"MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|HIE|EDGE|202601011200||ADT^A01^ADT_A01|CTRL|P|2.5.1\r"
       b"EVN|A01|202601011200\r"
       b"PID|1||PATID1234^^^HOSP^MR||JONES^WILLIAM^A||19610615|M\r")


def adt(control_id: str, version: str = "2.5.1") -> bytes:
    return ADT.replace(b"|CTRL|", f"|{control_id}|".encode()).replace(
        b"|2.5.1\r", f"|{version}\r".encode())


class MLLPLine:
    def __init__(self, pty: Pty) -> None:
        self.pty = pty
        self.buffer = b""

    async def send(self, raw: bytes, prefix: bytes = b"") -> bytes:
        await self.pty.send(prefix + encode_frame(raw))
        return await self.answer()

    async def answer(self) -> bytes:
        while b"\x1c\r" not in self.buffer:
            self.buffer += await self.pty.read()
        block, _, self.buffer = self.buffer.partition(b"\x1c\r")
        assert block.startswith(b"\x0b")
        return block[1:]


async def test_mllp_over_a_pty_gets_the_same_acks_as_tcp(tmp_path: Path,
                                                         corpora_dir: Path) -> None:
    device = tmp_path / "ttyHL7"
    pty = Pty(device)
    try:
        async with daemon_with(tmp_path / "inst", serial_table("hl7tty", device, "mllp")) as run:
            await listener(run, "hl7tty").wait_for_state("connected")
            line = MLLPLine(pty)
            first = await line.send(adt("SER1"))
            ack = parse_ack(first)
            assert (ack.code, ack.control_id) == ("AA", "SER1")
            # A duplicate gets the stored ACK, byte for byte, and no second row.
            assert await line.send(adt("SER1")) == first
            # Garbage before the start block is skipped; the message is still answered.
            ack = parse_ack(await line.send(adt("SER2"), prefix=b"line noise\r\n"))
            assert (ack.code, ack.control_id) == ("AA", "SER2")
            # A version the listener does not take: AR with ERR-3 203, kept as a dead letter.
            ack = parse_ack(await line.send(adt("SER3", version="2.0")))
            assert (ack.code, ack.control_id) == ("AR", "SER3") and "203" in ack.err_codes
            rows = inbox(run, "hl7tty")
            assert [(r["control_id"], r["state"]) for r in rows] == \
                [("SER1", "received"), ("SER2", "received"), ("SER3", "dead-letter")]
            assert rows[0]["raw"] == adt("SER1") and rows[0]["peer"] == f"tty:{device}"
            # Real feeds from the corpora: every answer names its message (MSA-2).
            answered = [(name, raw) for name, raw in iter_single_messages(corpora_dir)
                        if b"\x0b" not in raw and b"\x1c" not in raw
                        and _msh(raw, 15) not in ("NE", "ER")][:150]
            for name, raw in answered:
                ack = parse_ack(await line.send(raw))
                assert ack.code in ("AA", "AR", "CA", "CR"), name
                if ack.code in ("AA", "CA"):
                    assert ack.control_id == _msh(raw, 10), name
                else:
                    assert ack.control_id in ("", _msh(raw, 10)) and ack.err_codes, name
    finally:
        pty.unplug()


def _msh(raw: bytes, n: int) -> str:
    """MSH-n by plain splitting: an oracle independent of our header parser."""
    text = raw.decode("latin-1").lstrip("\ufeff\xef\xbb\xbf \r\n\t")
    first = text.replace("\r\n", "\r").replace("\n", "\r").split("\r", 1)[0]
    fields = first.split(first[3]) if len(first) > 3 else []
    return fields[n - 1].strip() if len(fields) > n - 1 else ""


async def test_serial_listener_names_share_the_mllp_namespace(tmp_path: Path) -> None:
    from edge.config import ConfigError, load_config
    from tests.integration.conftest import make_instance

    config = make_instance(tmp_path / "inst", serial_table("adt", tmp_path / "x", "mllp"))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert "listener names must be unique: adt" in " ".join(info.value.problems)


async def test_eot_only_session_stores_nothing(tmp_path: Path) -> None:
    device = tmp_path / "ttyLAB2"
    pty = Pty(device)
    try:
        async with daemon_with(tmp_path / "inst", serial_table("lab", device, "astm")) as run:
            line = listener(run, "lab")
            await line.wait_for_state("connected")
            instrument = Instrument(pty)
            assert await instrument.enq() == ACK
            await pty.send(EOT)
            await line.wait_until(lambda: line.counters.sessions == 1
                                  and line._driver is not None
                                  and line._driver.deadline is None)
            assert inbox(run, "lab") == []
    finally:
        pty.unplug()
