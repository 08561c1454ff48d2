"""``hie-edge erase --patient SYSTEM|VALUE``: erase one patient (see :mod:`edge.store.erasure`).

Works on the database directly, next to a running daemon (WAL). Asks for confirmation on a
terminal unless ``--yes``; refuses without a terminal and without ``--yes``. Prints counts only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import sys

from edge.cli import exits
from edge.cli.database import open_database
from edge.cli.exits import CLIError
from edge.config import Settings
from edge.crypto.blind_index import parse_identifier_token
from edge.crypto.errors import IndexInputError, KeyFileError, UnknownKeyError
from edge.crypto.keys import load_keyring
from edge.storage.errors import StorageError
from edge.store.erasure import erase_patient, scrub
from edge.store.errors import ErasureError
from edge.store.keys import StoreKeys

CONFIRM_WORD = "erase"


def run_erase(args: argparse.Namespace, settings: Settings) -> int:
    try:
        system, value = parse_identifier_token(args.patient)
        if not value.strip():
            raise IndexInputError("identifier", "identifier value is empty")
    except IndexInputError:
        raise CLIError(exits.USAGE, "hie-edge erase: --patient must be SYSTEM|VALUE "
                       "(|VALUE for an identifier without a system)") from None
    if not args.yes:
        if not sys.stdin.isatty():
            raise CLIError(exits.USAGE, "hie-edge erase: not a terminal; pass --yes to erase")
        print("This destroys every record, raw message and key of this patient for good.",
              file=sys.stderr)
        answer = input(f"Type '{CONFIRM_WORD}' to go on: ")
        if answer.strip() != CONFIRM_WORD:
            print("hie-edge erase: not confirmed; nothing erased", file=sys.stderr)
            return exits.FAILURE
    conn = open_database(settings)
    try:
        keys = StoreKeys(lambda: load_keyring(settings.keys.kek_file))
        report = erase_patient(conn, keys, system, value)
        if not report.found:
            scrub(conn)  # finishes an earlier erasure whose checkpoint was held up
    except (KeyFileError, UnknownKeyError) as exc:
        raise CLIError(exits.CONFIG, f"hie-edge erase: {exc}") from None
    except ErasureError as exc:
        raise CLIError(exits.DATAERR, f"hie-edge erase: {exc}") from None
    except (StorageError, sqlite3.Error) as exc:
        raise CLIError(exits.IOERR, f"hie-edge erase: {exc}") from None
    finally:
        conn.close()
    if not report.found:
        raise CLIError(exits.DATAERR,
                       "hie-edge erase: nothing is stored under that patient identifier; "
                       "nothing erased")
    if args.json:
        json.dump(dataclasses.asdict(report), sys.stdout, indent=2)
        print()
    else:
        print(f"erasure {report.erasure_id} at {report.at}: {report.resources} resource "
              f"versions, {report.raw_messages} raw messages, {report.keys} data key(s), "
              f"{report.identifiers + report.demographics} index rows deleted")
    if not report.scrubbed:
        print("hie-edge erase: erased, but the WAL could not be truncated yet (a reader holds "
              "an old snapshot); run the same command again to finish", file=sys.stderr)
        return exits.TEMPFAIL
    return exits.OK
