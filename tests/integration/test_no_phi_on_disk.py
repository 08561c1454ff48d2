"""Nothing of a patient in plaintext on disk or in the logs (issue 5): the corpora go in over
MLLP, then the database file, its WAL and the daemon's log are searched for every patient's
names, identifiers and birth date, in UTF-8 and in the message's own character set."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from adapters.mllp.client import MLLPClient
from edge.er7.errors import ER7Error
from edge.er7.tokenizer import parse
from tests.corpus import iter_single_messages
from tests.integration.conftest import DaemonProcess, NotifySocket, make_instance


def phi_of(raw: bytes) -> tuple[set[str], str] | None:
    """PID-3.1 values, PID-5 family and given names, PID-7 birth date; and the codec."""
    try:
        message = parse(raw)
    except ER7Error:
        return None
    pid = message.segment("PID")
    if pid is None:
        return None
    values = set()
    for rep in range(1, len(pid.field(3).repetitions) + 1):
        values.add(pid.field(3).component(1, rep=rep))
    for rep in range(1, len(pid.field(5).repetitions) + 1):
        values.add(pid.field(5).component(1, rep=rep))
        values.add(pid.field(5).component(2, rep=rep))
    values.add(pid.field(7).component(1))
    # Short or trivial strings match by chance, e.g. across the boundary of two clear metadata
    # columns ("RSP_K21" + control id "11111111"), digits shorter than a full birth date in a
    # timestamp's microseconds, test patients named after a resource type ("Patient").
    kept = {v.strip() for v in values
            if len(v.strip()) >= 5 and len(set(v.strip())) >= 3
            and not (v.strip().isdigit() and len(v.strip()) < 8)
            and v.strip() not in _CLEAR_WORDS}
    return kept, message.codec


# Stored in clear by design: resource type names (the store's ``type`` column).
_CLEAR_WORDS = {"Patient", "Observation", "Encounter", "Specimen", "Provenance", "Device"}


async def test_corpus_phi_never_reaches_disk_or_logs(tmp_path: Path, corpora_dir: Path,
                                                     notify_socket: NotifySocket) -> None:
    # on-processed: every ACK means the message's FHIR resources are in the store too.
    config = make_instance(tmp_path / "inst", "\n[logging]\nlevel = \"debug\"\n",
                           replace={'ack = "on-commit"': 'ack = "on-processed"'})
    daemon = DaemonProcess(config, notify_socket)
    daemon.wait_ready()
    messages = iter_single_messages(corpora_dir)
    host, port = daemon.mllp()
    # MSH-15 NE/ER: no accept ACK to wait for (they are covered by the intake tests).
    answered = [raw for _, raw in messages
                if raw.split(b"\r")[0].split(b"|")[14:15] not in ([b"NE"], [b"ER"])]
    async with MLLPClient.connect(host, port, timeout=60) as client:
        await client.send_many(answered)
    assert daemon.stop() == 0

    # MSH-3/4/10 are stored in clear on purpose (routing metadata); test data reuses values
    # such as 12345 as control ids and patient ids, so values found in any MSH are left out.
    headers = b"\n".join(re.split(rb"[\r\n]", raw.lstrip(b"\xef\xbb\xbf \r\n"))[0]
                         for raw in answered)
    needles: set[bytes] = set()
    for raw in answered:
        found = phi_of(raw)
        if found is None:
            continue
        values, codec = found
        for value in values:
            for encoded in (value.encode("utf-8"), value.encode(codec, errors="ignore")):
                if encoded not in headers:
                    needles.add(encoded)
    assert len(needles) > 200  # the corpora reuse test patients
    data_dir = tmp_path / "inst" / "data"
    haystacks = {path.name: path.read_bytes() for path in data_dir.iterdir() if path.is_file()}
    haystacks["daemon.log"] = daemon.log_path.read_bytes()
    assert "edge.db" in haystacks
    with sqlite3.connect(data_dir / "edge.db") as conn:
        (resources,) = conn.execute("SELECT count(*) FROM resources").fetchone()
    assert resources > 1000  # the records were converted and stored, not only the raw bytes
    leaks = sorted(f"{name}: {needle!r}" for name, blob in haystacks.items()
                   for needle in needles if needle in blob)
    assert leaks == [], "\n".join(leaks)
