"""``hie-edge``: argument parsing and dispatch. Only this module decides exit statuses.

``--config`` is accepted by every subcommand, before or after its arguments; without it the
config is ``$HIE_EDGE_CONFIG``, else /etc/hie-edge/edge.toml.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from edge import __version__
from edge.cli import exits
from edge.cli.exits import CLIError
from edge.cli.integrity import integrity_message
from edge.config import ConfigError, Settings, load_config, resolve_config_path
from edge.crypto.errors import IntegrityError
from edge.errors import EdgeError

Handler = Callable[[argparse.Namespace], int]

# Whose fault an error is decides the status: a config error must not be restarted by systemd
# (RestartPreventExitStatus=78); trouble in the environment (a port in use, a full disk) may
# clear up, so it gets EX_UNAVAILABLE and systemd tries again.
_EXIT_BY_FAULT = {"config": exits.CONFIG, "environment": exits.UNAVAILABLE,
                  "peer": exits.DATAERR, "internal": exits.SOFTWARE}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise CLIError(exits.USAGE, f"{self.prog}: {message}")


def _config_option(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    parser.add_argument("--config", metavar="FILE",
                        default=None if top else argparse.SUPPRESS,
                        help="config file (default: $HIE_EDGE_CONFIG or /etc/hie-edge/edge.toml)")


def build_parser() -> argparse.ArgumentParser:
    from edge.cli import commands

    parser = _Parser(prog="hie-edge",
                     description="HL7v2/FHIR edge appliance for a health-data consortium.")
    parser.add_argument("--version", action="version", version=f"hie-edge {__version__}")
    _config_option(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _config_option(p)
        p.set_defaults(handler=handler)
        return p

    command("run", commands.run, "run the daemon (as a systemd service or in the foreground)")

    p = command("init", commands.init, "create a working instance in DIR (config, keys, dev CA)")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--facility-id", default="dev-facility")
    p.add_argument("--timezone", default="UTC")
    p.add_argument("--any-port", action="store_true",
                   help="bind every listener to port 0 (any free port)")

    command("check-config", commands.check_config,
            "validate the config and the files it names")

    p = command("status", commands.status, "show the running daemon's status")
    p.add_argument("--json", action="store_true")

    p = command("messages", commands.messages, "list, show and replay stored messages")
    msub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    msub.required = True
    lp = msub.add_parser("list", help="list messages (metadata only)")
    _config_option(lp)
    lp.add_argument("--state", choices=["received", "processed", "dead-letter"])
    lp.add_argument("--limit", type=int, default=50)
    lp.add_argument("--json", action="store_true")
    sp = msub.add_parser("show", help="show one message's metadata")
    _config_option(sp)
    sp.add_argument("id", type=int)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--show-phi", action="store_true",
                    help="also print the raw message (decrypted; recorded as an AuditEvent)")
    rp = msub.add_parser("replay", help="run a dead-lettered message through intake again")
    _config_option(rp)
    rp.add_argument("id", type=int)

    p = command("convert", commands.convert,
                "convert HL7v2 messages in FILE to FHIR R4 transaction Bundles (JSON lines)")
    p.add_argument("file", metavar="FILE", help="a file of HL7v2 messages, or - for stdin")
    p.add_argument("--timezone", metavar="ZONE",
                   help="IANA zone for timestamps without an offset (default: the config's)")

    p = command("send", commands.send, "send HL7v2 messages from FILE over MLLP")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--to", required=True, metavar="HOST:PORT")
    p.add_argument("--tls", action="store_true", help="use TLS")
    p.add_argument("--ca", type=Path, help="CA bundle to verify the server with")
    p.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    p.add_argument("--key", type=Path, help="client certificate's key")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--json", action="store_true")
    p = command("keys", commands.keys, "rotate, split and recover the key-encryption key")
    ksub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    ksub.required = True
    kp = ksub.add_parser("rotate", help="new KEK; re-wrap data keys online")
    _config_option(kp)
    kp.add_argument("--batch-size", type=int, default=500)
    kp.add_argument("--rewrap-only", action="store_true", help="no new KEK; finish a rotation")
    kp.add_argument("--keep-old", action="store_true", help="keep archived KEKs (older backups)")
    kp.add_argument("--json", action="store_true")
    kp = ksub.add_parser("split", help="Shamir shares of the KEK for custodians")
    _config_option(kp)
    kp.add_argument("--shares", type=int, required=True)
    kp.add_argument("--threshold", type=int, required=True)
    kp.add_argument("--out-dir", type=Path, default=None)
    kp = ksub.add_parser("recover", help="rebuild the KEK from shares read on stdin")
    _config_option(kp)
    kp.add_argument("--out", type=Path, default=None)

    p = command("erase", commands.erase, "erase one patient's data and keys")
    p.add_argument("--patient", required=True, metavar="SYSTEM|VALUE")
    p.add_argument("--yes", action="store_true")
    p.add_argument("--json", action="store_true")

    p = command("backup", commands.backup, "consistent online backup (ciphertext only)")
    p.add_argument("file", type=Path, metavar="FILE")
    p = command("restore", commands.restore,
                "restore a backup into an empty storage dir, then verify it")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--json", action="store_true")

    p = command("verify", commands.verify,
                "check every stored record against its leaf, the log and the anchored root")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--all", action="store_true", help="every record version")
    scope.add_argument("--resource", metavar="TYPE/ID", help="every version of one resource")
    p.add_argument("--json", action="store_true")

    from edge.cli.audit import add_parser as add_audit
    from edge.cli.consent import add_parser as add_consent
    from edge.cli.ledger import add_parser as add_ledger
    from edge.cli.peer import add_parser as add_peer

    add_ledger(sub, _Parser, _config_option)
    for name, add, handler in (("consent", add_consent, commands.consent),
                               ("audit", add_audit, commands.audit),
                               ("peer", add_peer, commands.peer)):
        add(sub, _Parser, _config_option)
        sub.choices[name].set_defaults(handler=handler)
    return parser


def load_settings(args: argparse.Namespace) -> tuple[Path, Settings]:
    path = resolve_config_path(getattr(args, "config", None))
    return path, load_config(path)


def main(argv: Sequence[str] | None = None) -> int:
    from edge.logs import configure

    configure("warning")  # `run` reconfigures from [logging]
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except CLIError as exc:
        print(exc.message, file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return exits.CONFIG
    except IntegrityError as exc:
        # The stored data is wrong: EX_DATAERR, as `hie-edge verify` exits for it (not the
        # EX_UNAVAILABLE of other environment faults, which tells a script to try again).
        print(f"hie-edge: {integrity_message(exc)}", file=sys.stderr)
        return exits.DATAERR
    except EdgeError as exc:
        print(f"hie-edge: {exc}", file=sys.stderr)
        return _EXIT_BY_FAULT.get(exc.fault, exits.SOFTWARE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep the interpreter's final
        # flush from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exits.IOERR
    except Exception:
        # Our bug. The log line names the exception type and where it was raised, never its
        # message (which may quote data); the operator gets one line, not a traceback.
        logging.getLogger("edge.cli").critical("internal error", exc_info=True)
        print("hie-edge: internal error (details in the log); please report it",
              file=sys.stderr)
        return exits.SOFTWARE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
