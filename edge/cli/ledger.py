"""``hie-edge ledger new-key|deploy|add-facility``: consortium ledger operations.

``deploy`` and ``add-facility`` are the consortium admin's (signed with the admin key);
``new-key`` makes a facility's secp256k1 anchoring key (mode 0400) and prints the address
the admin registers. Keys are files holding a 0x-prefixed hex private key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from edge.cli import exits
from edge.cli.exits import CLIError
from edge.secure_files import write_private
from ledger_client.errors import LedgerError


def run_ledger(args: argparse.Namespace) -> int:
    try:
        if args.action == "new-key":
            return _new_key(args.file)
        if args.action == "deploy":
            return _deploy(args)
        return _add_facility(args)
    except LedgerError as exc:
        status = exits.UNAVAILABLE if exc.retriable else exits.DATAERR
        raise CLIError(status, f"hie-edge ledger {args.action}: {exc}") from None


def _new_key(path: Path) -> int:
    from eth_account import Account

    account = Account.create()
    try:
        write_private(path, (account.key.to_0x_hex() + "\n").encode())
    except FileExistsError:
        raise CLIError(exits.CANTCREAT, f"hie-edge ledger new-key: {path} exists") from None
    except OSError as exc:
        raise CLIError(exits.CANTCREAT,
                       f"hie-edge ledger new-key: {path}: {exc.strerror}") from None
    print(account.address)
    return exits.OK


def _deploy(args: argparse.Namespace) -> int:
    from ledger_client.backends.evm import deploy

    result = asyncio.run(deploy(args.rpc_url, private_key_file=args.admin_key_file,
                                confirmations=args.confirmations))
    info = {"contract": result.contract, "chain_id": result.chain_id, "admin": result.admin,
            "tx_hash": result.tx_hash, "block_number": result.block_number}
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return exits.OK


def _add_facility(args: argparse.Namespace) -> int:
    from ledger_client.backends.evm import add_facility

    tx_hash = asyncio.run(add_facility(args.rpc_url, args.contract, args.facility, args.account,
                                       private_key_file=args.admin_key_file,
                                       confirmations=args.confirmations))
    print(tx_hash)
    return exits.OK


def add_parser(sub: argparse._SubParsersAction, parser_class: type,  # type: ignore[type-arg]
               config_option: object) -> None:
    """The ``ledger`` subcommand's arguments."""
    p = sub.add_parser("ledger", help="consortium ledger operations (EVM)")
    lsub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    lsub.required = True
    nk = lsub.add_parser("new-key", help="make a facility anchoring key; prints its address")
    nk.add_argument("file", type=Path)
    dp = lsub.add_parser("deploy", help="deploy the anchor contract (consortium admin)")
    dp.add_argument("--rpc-url", required=True)
    dp.add_argument("--admin-key-file", type=Path, required=True)
    dp.add_argument("--confirmations", type=int, default=1)
    dp.add_argument("--json", action="store_true")
    af = lsub.add_parser("add-facility", help="register a facility's account (consortium admin)")
    af.add_argument("--rpc-url", required=True)
    af.add_argument("--contract", required=True)
    af.add_argument("--facility", required=True)
    af.add_argument("--account", required=True, help="the facility's anchoring address")
    af.add_argument("--admin-key-file", type=Path, required=True)
    af.add_argument("--confirmations", type=int, default=1)
    p.set_defaults(handler=run_ledger)
