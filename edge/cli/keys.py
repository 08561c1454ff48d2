"""``hie-edge keys rotate|split|recover``: the key-encryption key's life.

``rotate`` makes a new KEK and re-wraps every data key under it while the daemon keeps running
(see :mod:`edge.store.rotation` for the steps and the race with the daemon); ``split`` writes
Shamir shares of the current KEK for custodians; ``recover`` rebuilds the KEK file from enough
of them. Key material is printed only by ``split`` without ``--out-dir``, and only the shares.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from edge.cli import exits
from edge.cli.database import open_database
from edge.cli.exits import CLIError
from edge.cli.progress import counter
from edge.config import Settings
from edge.crypto.errors import CryptoError, KeyFileError, ShareError, UnknownKeyError
from edge.crypto.keys import (
    credential_path,
    load_current_kek,
    load_keyring,
    rotate_kek_file,
    write_kek_file,
)
from edge.crypto.shamir import parse_share, recover_kek, split_kek
from edge.secure_files import write_private
from edge.storage.database import connect, database_path
from edge.storage.errors import StorageError
from edge.store.rotation import (
    kek_ids_in_use,
    record_current_kek,
    retire_unused_keks,
    rewrap_all,
)


def run_keys(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "rotate":
        return _rotate(args, settings)
    if args.action == "split":
        return _split(args, settings)
    if args.action == "recover":
        return _recover(args, settings)
    raise CLIError(exits.USAGE, f"hie-edge keys: unknown action {args.action!r}")


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    kek_file = settings.keys.kek_file
    if args.batch_size < 1:
        raise CLIError(exits.USAGE, "hie-edge keys rotate: --batch-size must be at least 1")
    if credential_path() is not None and not args.rewrap_only:
        raise CLIError(
            exits.CONFIG,
            "hie-edge keys rotate: the KEK comes from the systemd credential 'kek', which this "
            "command cannot replace. Install the new credential, keep the old KEK as "
            f"{kek_file.parent}/kek.<id>, restart, then run `hie-edge keys rotate --rewrap-only`")
    conn = open_database(settings)
    try:
        old_id = None
        if not args.rewrap_only:
            _, old = rotate_kek_file(kek_file)
            old_id = old.kek_id
        keyring = load_keyring(kek_file)
        # From here on every key the daemon creates is wrapped under the new KEK.
        record_current_kek(conn, keyring.current.kek_id)
        to_rewrap = sum(n for kek_id, n in kek_ids_in_use(conn).items()
                        if kek_id != keyring.current.kek_id)
        report = rewrap_all(conn, keyring, batch_size=args.batch_size,
                            progress=counter(to_rewrap, desc="re-wrapping data keys"))
        retired = ([] if args.keep_old or report.failed
                   else retire_unused_keks(conn, keyring, kek_file.parent))
        in_use = kek_ids_in_use(conn)
    except (KeyFileError, UnknownKeyError) as exc:
        raise CLIError(exits.CONFIG, f"hie-edge keys rotate: {exc}") from None
    except (StorageError, sqlite3.Error) as exc:
        raise CLIError(exits.IOERR, f"hie-edge keys rotate: {exc}") from None
    finally:
        conn.close()
    result: dict[str, Any] = {
        "kek": keyring.current.kek_id, "previous": old_id, "rewrapped": report.rewrapped,
        "batches": report.batches, "failed": report.failed, "retired": retired,
        "keys_by_kek": in_use,
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"current KEK {keyring.current.kek_id}"
              + (f" (was {old_id})" if old_id else ""))
        print(f"re-wrapped {report.rewrapped} data keys in {report.batches} batches")
        print("retired KEKs: " + (", ".join(retired) if retired else "none"))
        print("reminder: Shamir shares of an earlier KEK do not recover this one: run "
              "`hie-edge keys split` again")
    if report.failed:
        print(f"hie-edge keys rotate: {len(report.failed)} data keys did not unwrap (altered "
              f"rows): {', '.join(report.failed)}; old KEKs kept", file=sys.stderr)
        return exits.DATAERR
    return exits.OK


def _split(args: argparse.Namespace, settings: Settings) -> int:
    try:
        kek, _ = load_current_kek(settings.keys.kek_file)
        shares = split_kek(kek, shares=args.shares, threshold=args.threshold)
    except ShareError as exc:
        raise CLIError(exits.USAGE, f"hie-edge keys split: {exc}") from None
    except KeyFileError as exc:
        raise CLIError(exits.CONFIG, f"hie-edge keys split: {exc}") from None
    out_dir: Path | None = args.out_dir
    if out_dir is None:
        for share in shares:
            print(share)
    else:
        paths = [out_dir / f"kek-{kek.kek_id}-share-{i}-of-{len(shares)}.txt"
                 for i in range(1, len(shares) + 1)]
        try:
            out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            existing = [p for p in paths if p.exists()]
            if existing:
                raise CLIError(exits.CANTCREAT,
                               f"hie-edge keys split: {existing[0]} already exists")
            for path, share in zip(paths, shares, strict=True):
                write_private(path, (share + "\n").encode("ascii"), mode=0o400)
        except FileExistsError as exc:
            raise CLIError(exits.CANTCREAT,
                           f"hie-edge keys split: {exc.filename} already exists") from None
        except OSError as exc:
            raise CLIError(exits.CANTCREAT,
                           f"hie-edge keys split: cannot write to {out_dir}: {exc.strerror}"
                           ) from None
        for path in paths:
            print(path)
    print(f"{len(shares)} shares of KEK {kek.kek_id}; any {args.threshold} rebuild it "
          "(`hie-edge keys recover`). Give each custodian one, and split again after "
          "`keys rotate`.", file=sys.stderr)
    return exits.OK


def _read_shares() -> list[str]:
    """Share lines from stdin, until EOF or as many as the first share's threshold."""
    if sys.stdin.isatty():
        print("enter the shares, one per line (end with Ctrl-D):", file=sys.stderr)
    lines: list[str] = []
    threshold: int | None = None
    for raw in sys.stdin:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        lines.append(line)
        if threshold is None:
            threshold = parse_share(line, position=1).threshold
        if len(lines) >= threshold:
            break
    return lines


def _recover(args: argparse.Namespace, settings: Settings) -> int:
    target: Path = args.out or settings.keys.kek_file
    if target.exists():
        raise CLIError(exits.CANTCREAT,
                       f"hie-edge keys recover: {target} already exists; refusing to overwrite "
                       "a KEK (use --out to write elsewhere)")
    try:
        kek = recover_kek(_read_shares())
    except ShareError as exc:
        raise CLIError(exits.DATAERR, f"hie-edge keys recover: {exc}") from None
    try:
        write_kek_file(target, kek)
    except KeyFileError as exc:
        raise CLIError(exits.CANTCREAT, f"hie-edge keys recover: {exc}") from None
    print(f"recovered KEK {kek.kek_id} into {target} (mode 0400)")
    _check_database_needs(settings, kek.kek_id)
    return exits.OK


def _check_database_needs(settings: Settings, kek_id: str) -> None:
    # Informational: a KEK recovered from shares made before a rotation opens nothing.
    path = database_path(settings.storage.dir)
    if not path.exists():
        return
    try:
        conn = connect(path, readonly=True)
        try:
            needed = kek_ids_in_use(conn)
        finally:
            conn.close()
    except (StorageError, sqlite3.Error, CryptoError):
        return
    if needed and kek_id not in needed:
        print(f"warning: the database's data keys are wrapped under {', '.join(sorted(needed))}"
              f", not {kek_id}: these shares predate a rotation", file=sys.stderr)
