"""``hie-edge init DIR``: a working instance in one directory.

The instance holds a config with loopback binds, the storage directory, the key-encryption
key (mode 0400), the facility's Ed25519 signing key, and a development CA with a node
certificate for mutual TLS. Paths in the config are relative to it, so the directory can be
moved or copied whole. Nothing existing is ever overwritten.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from edge.crypto.keys import generate_kek_file
from edge.devca import create_ca, issue
from edge.errors import EdgeError
from edge.signing import generate_signing_key

CONFIG_NAME = "edge.toml"


class InstanceExistsError(EdgeError):
    fault = "config"


@dataclass(frozen=True, slots=True)
class InitOptions:
    facility_id: str = "dev-facility"
    timezone: str = "UTC"
    mllp_port: int = 2575
    admin_port: int = 9100
    fhir_port: int = 8080


def init_instance(directory: Path, options: InitOptions = InitOptions()) -> Path:
    """Create the instance and return its config path."""
    config = directory / CONFIG_NAME
    if config.exists() or (directory / "keys").exists() or (directory / "data").exists():
        raise InstanceExistsError(f"{directory}: already holds an instance; refusing to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "keys", "tls"):
        (directory / sub).mkdir(mode=0o700)
    generate_kek_file(directory / "keys" / "kek")
    generate_signing_key(directory / "keys" / "facility-ed25519.pem")
    ca = create_ca(directory / "tls", name=options.facility_id)
    issue(ca, directory / "tls", "node", common_name=options.facility_id)
    text = _CONFIG_TEMPLATE.format(
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        facility_id=options.facility_id, timezone=options.timezone,
        mllp_port=options.mllp_port, admin_port=options.admin_port,
        fhir_port=options.fhir_port,
    )
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return config


_CONFIG_TEMPLATE = """\
# hie-edge development instance, made by `hie-edge init` on {created}.
# Every key is documented in config/edge.example.toml. Paths are relative to this file.

[facility]
id = "{facility_id}"
timezone = "{timezone}"

[facility.identifier_systems]
# v2 assigning authority (CX-4) -> FHIR Identifier.system
# HOSP = "urn:oid:2.16.840.1.113883.3.1234"

[storage]
dir = "data"

[keys]
kek_file = "keys/kek"
signing_key_file = "keys/facility-ed25519.pem"

[[mllp]]
name = "adt"
bind = "127.0.0.1:{mllp_port}"
ack = "on-commit"

# An MLLP listener over mutual TLS, with the development CA made for this instance:
# [[mllp]]
# name = "adt-tls"
# bind = "127.0.0.1:2576"
# tls = {{ cert = "tls/node.pem", key = "tls/node-key.pem", client_ca = "tls/ca.pem" }}

# The FHIR R4 API for local systems. Anonymous requests from loopback only: a demo setting.
# Production: tokens_file (bearer token hashes) and/or tls with client_ca (docs/fhir.md).
[fhir]
bind = "127.0.0.1:{fhir_port}"
allow_anonymous_loopback = true

[admin]
bind = "127.0.0.1:{admin_port}"

[ledger]
backend = "local"
anchor_interval_s = 10
"""
