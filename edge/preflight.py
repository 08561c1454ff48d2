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
    if settings.fhir is not None:
        fhir = settings.fhir
        if fhir.tls is not None:
            problems += _readable_file("fhir.tls.cert", fhir.tls.cert)
            problems += _private_file("fhir.tls.key", fhir.tls.key)
            if fhir.tls.client_ca is not None:
                problems += _readable_file("fhir.tls.client_ca", fhir.tls.client_ca)
        if fhir.tokens_file is not None:
            problems += _readable_file("fhir.tokens_file", fhir.tokens_file)
        for index, source in enumerate(fhir.sources):
            prefix = f"fhir.sources[{index}]"
            if source.bearer_token_file is not None:
                problems += _private_file(f"{prefix}.bearer_token_file",
                                          source.bearer_token_file)
            if source.tls is not None:
                for name in ("ca", "cert"):
                    path = getattr(source.tls, name)
                    if path is not None:
                        problems += _readable_file(f"{prefix}.tls.{name}", path)
                if source.tls.key is not None:
                    problems += _private_file(f"{prefix}.tls.key", source.tls.key)
    if settings.peer is not None:
        tls = settings.peer.tls
        problems += _readable_file("peer.tls.cert", tls.cert)
        problems += _private_file("peer.tls.key", tls.key)
        problems += _readable_file("peer.tls.ca", tls.ca)
        if tls.crl is not None:
            problems += _readable_file("peer.tls.crl", tls.crl)
        if settings.peer.webhook is not None:
            problems += _private_file("peer.webhook.secret_file",
                                      settings.peer.webhook.secret_file)
    return problems
