"""The subcommands. Each returns an exit status or raises CLIError / ConfigError."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from edge.cli import exits
from edge.cli.exits import CLIError
from edge.cli.main import load_settings
from edge.config import Settings


def run(args: argparse.Namespace) -> int:
    from edge.daemon.app import run_daemon
    from edge.preflight import preflight

    path, settings = load_settings(args)
    problems = preflight(settings)
    if problems:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return exits.CONFIG
    return run_daemon(path, settings)


def init(args: argparse.Namespace) -> int:
    from edge.instance import InitOptions, InstanceExistsError, init_instance

    options = InitOptions(facility_id=args.facility_id, timezone=args.timezone,
                          mllp_port=0 if args.any_port else 2575,
                          admin_port=0 if args.any_port else 9100,
                          fhir_port=0 if args.any_port else 8080)
    try:
        config = init_instance(args.dir, options)
    except InstanceExistsError as exc:
        raise CLIError(exits.CANTCREAT, f"hie-edge init: {exc}") from None
    except OSError as exc:
        raise CLIError(exits.CANTCREAT,
                       f"hie-edge init: cannot create {args.dir}: {exc.strerror}") from None
    # Check what we wrote the way `run` will, so a broken template cannot ship unnoticed.
    from edge.config import load_config

    load_config(config)
    print(f"created {config}")
    print(f"start it with: hie-edge run --config {config}")
    return exits.OK


def check_config(args: argparse.Namespace) -> int:
    from edge.preflight import preflight

    path, settings = load_settings(args)
    problems = preflight(settings)
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    if problems:
        return exits.CONFIG
    print(f"{path}: ok")
    return exits.OK


def admin_url(settings: Settings) -> str:
    """The running daemon's admin address: from the config, or from its runtime file when
    the config binds port 0."""
    bind = settings.admin.bind
    if bind.port == 0:
        from edge.daemon.app import RUNTIME_FILE

        runtime = settings.storage.dir / RUNTIME_FILE
        try:
            info = json.loads(runtime.read_text(encoding="utf-8"))
            return f"http://{info['admin'][0]}"
        except (OSError, ValueError, KeyError, IndexError):
            raise CLIError(exits.UNAVAILABLE,
                           "hie-edge: the daemon is not running (no runtime file)") from None
    host = "127.0.0.1" if bind.host in ("0.0.0.0", "") else bind.host  # noqa: S104
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    return f"http://{host}:{bind.port}"


def fetch_json(url: str, timeout: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CLIError(exits.UNAVAILABLE,
                       f"hie-edge: cannot reach the daemon at {url}: {exc}") from None


def status(args: argparse.Namespace) -> int:
    _, settings = load_settings(args)
    info = fetch_json(admin_url(settings) + "/status")
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
        return exits.OK
    print(f"hie-edge {info['version']}  facility {info['facility']}  pid {info['pid']}  "
          f"up {info['uptime_s']:.0f}s")
    print(f"admin: {', '.join(info['admin'])}")
    for listener in info["listeners"]:
        print(f"listener {listener['name']} ({listener['kind']}): {', '.join(listener['bound'])}"
              f"  connections {listener.get('connections', 0)}")
    inbox = info["inbox"]
    acks = ", ".join(f"{code} {n}" for code, n in sorted(inbox["acknowledged"].items()))
    print(f"inbox: received {inbox['received']}  acknowledged [{acks or 'none'}]  "
          f"duplicates {inbox['duplicates']}  dead letters {inbox['dead_letters']}  "
          f"pending {inbox['pending']}")
    processing = info.get("processing") or {}
    if processing:
        print(f"processing: processed {processing.get('processed', 0)}  unsupported "
              f"{processing.get('unsupported', 0)}  dead letters "
              f"{processing.get('dead-letter', 0)}"
              + (f"  last error {processing['last_error']}" if processing.get("last_error")
                 else ""))
    for key, days in (info.get("certificates_days_left") or {}).items():
        print(f"certificate {key}: " + ("unreadable" if days is None else
                                        f"EXPIRED {-days} days ago" if days < 0 else
                                        f"{days} days left"))
    ledger = info.get("ledger") or {}
    if ledger:
        reachable = {True: "reachable", False: "UNREACHABLE", None: "not probed yet"}
        print(f"ledger ({ledger['backend']}, {reachable[ledger['reachable']]}): log size "
              f"{ledger['log_size']}  anchored {ledger['last_anchored_size']}  pending "
              f"{ledger['leaves_pending']}"
              + (f"  last error {ledger['last_error']}" if ledger.get("last_error") else ""))
    return exits.OK


def messages(args: argparse.Namespace) -> int:
    from edge.cli.messages import run_messages

    _, settings = load_settings(args)
    return run_messages(args, settings)


def keys(args: argparse.Namespace) -> int:
    from edge.cli.keys import run_keys

    return run_keys(args, load_settings(args)[1])


def erase(args: argparse.Namespace) -> int:
    from edge.cli.erase import run_erase

    return run_erase(args, load_settings(args)[1])


def backup(args: argparse.Namespace) -> int:
    from edge.cli.backup import run_backup

    return run_backup(args, load_settings(args)[1])


def restore(args: argparse.Namespace) -> int:
    from edge.cli.backup import run_restore

    return run_restore(args, load_settings(args)[1])


def convert(args: argparse.Namespace) -> int:
    """Works without a config (facility "convert", UTC); uses one when given or installed."""
    from edge.cli.convert import run_convert
    from edge.config.loader import DEFAULT_CONFIG_PATH, ENV_VAR

    explicit = getattr(args, "config", None) or os.environ.get(ENV_VAR)
    settings = load_settings(args)[1] if explicit or DEFAULT_CONFIG_PATH.exists() else None
    return run_convert(args, settings)


def verify(args: argparse.Namespace) -> int:
    from edge.cli.verify import run_verify

    return run_verify(args, load_settings(args)[1])


def consent(args: argparse.Namespace) -> int:
    from edge.cli.consent import run_consent

    return run_consent(args, load_settings(args)[1])


def audit(args: argparse.Namespace) -> int:
    from edge.cli.audit import run_audit

    return run_audit(args, load_settings(args)[1])


def peer(args: argparse.Namespace) -> int:
    from edge.cli.peer import run_peer

    return run_peer(args, load_settings(args)[1])


def send(args: argparse.Namespace) -> int:
    from edge.cli.send import run_send

    return run_send(args)


