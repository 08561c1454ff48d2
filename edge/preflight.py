"""Checks of the files a config names, run by ``check-config`` and before ``run`` starts.

Each problem is one line naming the config key and the file, never a key's content.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.config import Settings
from edge.crypto.errors import KeyFileError
from edge.crypto.keys import credential_path, read_kek_file


def _private_file(key: str, path: Path) -> list[str]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return [f"{key}: {path}: file not found"]
    except OSError as exc:
        return [f"{key}: {path}: cannot read ({exc.strerror})"]
    if mode & 0o077:
        return [f"{key}: {path}: mode {mode & 0o777:04o} lets group or others read it; "
                f"chmod 0400 it"]
    if not os.access(path, os.R_OK):
        return [f"{key}: {path}: not readable by this user"]
    return []


def _readable_file(key: str, path: Path) -> list[str]:
    if not path.is_file():
        return [f"{key}: {path}: file not found"]
    if not os.access(path, os.R_OK):
        return [f"{key}: {path}: not readable by this user"]
    return []


def preflight(settings: Settings) -> list[str]:
    problems: list[str] = []
    if credential_path() is None:
        problems += _private_file("keys.kek_file", settings.keys.kek_file)
        if not problems:
            try:
                read_kek_file(settings.keys.kek_file)
            except KeyFileError as exc:
                problems.append(f"keys.kek_file: {exc}")
    problems += _private_file("keys.signing_key_file", settings.keys.signing_key_file)
    storage = settings.storage.dir
    existing = storage if storage.exists() else storage.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"storage.dir: {storage}: not a writable directory")
    for index, listener in enumerate(settings.mllp):
        if listener.tls is not None:
            prefix = f"mllp[{index}].tls"
            problems += _readable_file(f"{prefix}.cert", listener.tls.cert)
            problems += _private_file(f"{prefix}.key", listener.tls.key)
            if listener.tls.client_ca is not None:
                problems += _readable_file(f"{prefix}.client_ca", listener.tls.client_ca)
    if settings.ledger.evm is not None:
        problems += _private_file("ledger.evm.key_file", settings.ledger.evm.key_file)
    return problems
