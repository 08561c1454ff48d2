"""No PHI on disk or in logs: ingest synthetic Patients, Observations and raw messages that
carry known names, identifiers and birth dates, then search the database file, its WAL and the
captured logs for them in UTF-8 and latin-1. (The MLLP-level test over the corpora lives with
the integration tests.)"""

from __future__ import annotations

import argparse
import io
import logging

import pytest

from edge.cli.erase import run_erase
from edge.storage.group_commit import GroupCommitter
from edge.store.rekey import rekey_inbox_message
from edge.store.resources import ResourceStore
from tests.edge.store.store_support import (
    SYSTEM,
    Env,
    add_inbox_message,
    file_bytes,
    hl7_message,
    insert_inbox_message,
    observation_resource,
    patient_ref,
    patient_resource,
    phi_strings,
)

ACCENTED = "Ñúñez-Çelik"  # encodes differently in UTF-8 and latin-1


async def test_nothing_of_a_patient_is_on_disk_or_in_logs(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    committer = GroupCommitter(env.db_path, max_batch=32)
    committer.start()
    store = ResourceStore(env.keys())
    try:
        for n in range(12):
            patient = patient_resource(n)
            patient["name"].append({"family": ACCENTED, "given": [f"Zorbgiven{n}"]})
            await committer.run(lambda c, p=patient, n=n: store.put(  # type: ignore[misc]
                c, p, patient=patient_ref(n)))
            for k in range(3):
                obs = observation_resource(n, k)
                await committer.run(lambda c, o=obs, n=n: store.put(  # type: ignore[misc]
                    c, o, patient=patient_ref(n)))
            raw = hl7_message(n) + f"NK1|1|{ACCENTED}\r".encode("latin-1")
            row_id = await committer.run(lambda c, raw=raw: insert_inbox_message(c, store.keys,
                                                                                raw))
            if n % 2:
                await committer.run(lambda c, r=row_id, n=n: rekey_inbox_message(
                    c, store.keys, r, patient_ref(n)))
    finally:
        committer.close()
    on_disk = file_bytes(env.db_path)
    assert len(on_disk) > 50_000  # the WAL was not checkpointed away: it is searched too
    logs = "\n".join(r.getMessage() + repr(getattr(r, "fields", "")) for r in caplog.records)
    for n in range(12):
        for text in [*phi_strings(n), ACCENTED]:
            for encoding in ("utf-8", "latin-1"):
                assert text.encode(encoding) not in on_disk, (n, text, encoding)
            assert text not in logs


def test_erase_cli_output_and_errors_hold_no_phi(env: Env, capsys: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    conn = env.connect()
    store = ResourceStore(env.keys())
    store.put(conn, patient_resource(1), patient=patient_ref(1))
    add_inbox_message(conn, store.keys, hl7_message(1))
    conn.close()
    args = argparse.Namespace(patient=f"{SYSTEM}|MRN000001", yes=True, json=False)
    assert run_erase(args, env.settings) == 0
    out = capsys.readouterr()
    assert "1 resource versions" in out.out
    from edge.cli.exits import CLIError

    with pytest.raises(CLIError) as info:
        run_erase(args, env.settings)  # again: nothing left
    assert info.value.status == 65
    texts = [out.out, out.err, info.value.message, caplog.text]
    for text in texts:
        for phi in phi_strings(1):
            assert phi not in text


def test_erase_cli_refuses_without_yes_off_a_terminal(env: Env,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.cli.exits import CLIError

    monkeypatch.setattr("sys.stdin", io.StringIO("erase\n"))  # not a terminal
    with pytest.raises(CLIError) as info:
        run_erase(argparse.Namespace(patient=f"{SYSTEM}|MRN000001", yes=False, json=False),
                  env.settings)
    assert info.value.status == 64
    with pytest.raises(CLIError) as info:
        run_erase(argparse.Namespace(patient="no-bar", yes=True, json=False), env.settings)
    assert info.value.status == 64
