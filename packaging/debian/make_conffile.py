#!/usr/bin/env python3
"""Write the packaged /etc/hie-edge/edge.toml from config/edge.example.toml.

Usage: make_conffile.py EXAMPLE OUTPUT

The package ships the documented example itself, so every key keeps its comment, with one
change: tables that name files or devices a fresh install cannot have (a listener's TLS
certificates, serial ports, the EVM account key) are commented out, line by line, so that
`hie-edge check-config` passes on a new install once the package has made the keys. An
operator enables them by removing the leading "# ". Uses only the standard library: it runs
under the build host's python3.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

# Tables that name what a fresh install cannot have: certificate and key files (see
# edge.preflight), and serial devices (the unit opens none until the serial-ports drop-in).
OPTIONAL_TABLES = ("mllp.tls", "serial", "serial.profile", "ledger.evm", "fhir", "fhir.tls",
                   "fhir.sources", "fhir.sources.tls", "peer", "peer.tls", "peer.webhook",
                   "peer.peers")

HEADER = """\
# /etc/hie-edge/edge.toml, installed by the hie-edge package as a conffile: your changes are
# kept across upgrades. It is config/edge.example.toml with the tables that need files or
# devices you provide ([mllp.tls], [[serial]], [ledger.evm], [fhir], [peer]) commented out.
# After editing, run
#   hie-edge check-config && systemctl reload hie-edge
# See /usr/share/doc/hie-edge/operations.md.
"""


def _table_name(line: str) -> str | None:
    """The table a header line opens (``[a.b]`` or ``[[a]]``), else None."""
    stripped = line.strip()
    if not stripped.startswith("["):
        return None
    return stripped.strip("[]").strip()


def _has_table(data: object, path: list[str]) -> bool:
    """Whether ``data`` (parsed TOML) has the table at ``path``, in any array element."""
    if not path:
        return True
    if isinstance(data, list):
        return any(_has_table(item, path) for item in data)
    return isinstance(data, dict) and path[0] in data and _has_table(data[path[0]], path[1:])


def make_conffile(example: str) -> str:
    """The packaged config text for the example's text ``example``."""
    out: list[str] = [HEADER]
    commenting = False
    for line in example.splitlines():
        table = _table_name(line)
        if table is not None:
            commenting = table in OPTIONAL_TABLES
        active = line.strip() and not line.lstrip().startswith("#")
        out.append("# " + line if commenting and active else line)
    text = "\n".join(out) + "\n"
    data = tomllib.loads(text)
    # The result must still parse, and the optional tables must be gone.
    for dotted in OPTIONAL_TABLES:
        if _has_table(data, dotted.split(".")):
            raise SystemExit(f"make_conffile: [{dotted}] is still active")
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: make_conffile.py EXAMPLE OUTPUT", file=sys.stderr)
        return 64
    text = make_conffile(Path(argv[1]).read_text(encoding="utf-8"))
    Path(argv[2]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
