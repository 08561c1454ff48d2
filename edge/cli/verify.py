"""``hie-edge verify [--all | --resource TYPE/ID] [--json]``: exit 0 when every record checks
out, 65 (EX_DATAERR) when anything does not, 69 when the ledger cannot be reached."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator

from edge.cli import exits
from edge.cli.database import open_database
from edge.cli.exits import CLIError
from edge.cli.progress import iterate
from edge.config import Settings
from edge.crypto.keys import load_keyring
from edge.ledger_settings import backend_options, local_defaults
from edge.storage.database import database_path
from edge.store.keys import StoreKeys
from edge.verify import VerifyReport, rows_to_check, verify
from ledger_client.backends import open_backend
from ledger_client.errors import BackendUnavailable


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    if not args.all and not args.resource:
        raise CLIError(exits.USAGE, "hie-edge verify: give --all or --resource TYPE/ID")
    conn = open_database(settings, readonly=False)
    try:
        keys = StoreKeys(lambda: load_keyring(settings.keys.kek_file))
        try:
            rows = rows_to_check(conn, args.resource)
            if args.resource and not rows:
                raise CLIError(exits.DATAERR, f"hie-edge verify: no resource {args.resource}")
            report = asyncio.run(_verify(settings, conn, keys, rows,
                                         show_progress=not args.json))
        except sqlite3.DatabaseError as exc:
            raise CLIError(exits.DATAERR, "hie-edge verify: the database is damaged "
                           f"({type(exc).__name__}); run `sqlite3 {settings.storage.dir}/"
                           "edge.db 'PRAGMA integrity_check'` and restore from a backup"
                           ) from None
    finally:
        conn.close()
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=2)
        print()
    else:
        _print(report)
    return exits.OK if report.ok else exits.DATAERR


async def _verify(settings: Settings, conn: object, keys: StoreKeys, rows: list[int], *,
                  show_progress: bool) -> VerifyReport:
    import sqlite3

    assert isinstance(conn, sqlite3.Connection)
    options = backend_options(settings)
    if settings.ledger.backend == "local":
        options = local_defaults(database_path(settings.storage.dir))
    backend = open_backend(settings.ledger.backend, **options)
    try:
        return await verify(conn, keys, backend, settings.facility.id, rows,
                            progress=_bar(len(rows)) if show_progress else iter)
    except BackendUnavailable as exc:
        raise CLIError(exits.UNAVAILABLE, f"hie-edge verify: ledger unreachable: {exc}") from None
    finally:
        await backend.aclose()


def _bar(total: int) -> Callable[[Iterator[int]], Iterator[int]]:
    return lambda rows: iterate(rows, total=total, desc="verifying")


def _print(report: VerifyReport) -> None:
    print(f"checked {report.checked} record versions: {report.verified} verified against the "
          f"anchored root (tree size {report.anchored_size}), {report.pending} pending anchoring")
    print(f"log size {report.log_size}; {report.anchors_checked} anchored checkpoints checked")
    for finding in report.findings:
        print(f"FAIL {finding.what}: {finding.problem}")
    print("ok" if report.ok else f"{len(report.findings)} problem(s)")
