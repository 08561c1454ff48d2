"""``hie-edge peer query --patient SYSTEM|VALUE --purpose P [--peer ID ... | --all]``: ask
members for a patient's records and verify every one against the ledger (see
:mod:`edge.peer.query`). Exit 0 when every record that came back verified, 1 when any failed
verification, 69 when no member could be asked. A member that could not be asked, or went
away mid-answer, is in the report with its status and reason (an unfinished answer verifies
nothing); it alone does not change the exit status unless no member answered at all."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from edge.cli import exits
from edge.cli.consent import patient_arg
from edge.cli.exits import CLIError
from edge.config import Settings
from edge.peer.codes import PURPOSES
from edge.peer.directory import PeerDirectory, cert_thumbprint
from edge.peer.query import (
    CheckpointRoots,
    Credentials,
    LedgerRoots,
    PeerOutcome,
    QuerySpec,
    RootSource,
    query_peers,
)


def add_parser(sub: argparse._SubParsersAction, parser_class: type,  # type: ignore[type-arg]
               config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``peer`` subcommand's arguments (the handler is :func:`run_peer`)."""
    p = sub.add_parser("peer", help="query member facilities for a patient's records")
    config_option(p)
    psub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    psub.required = True
    q = psub.add_parser("query", help="ask members, verify every record's ledger receipt")
    config_option(q)
    q.add_argument("--patient", required=True, metavar="SYSTEM|VALUE")
    q.add_argument("--purpose", required=True, choices=sorted(PURPOSES))
    which = q.add_mutually_exclusive_group()
    which.add_argument("--peer", action="append", default=[], metavar="ID")
    which.add_argument("--all", action="store_true", help="every member (the default)")
    q.add_argument("--practitioner", default=None, help="who asks (default: your login)")
    q.add_argument("--role", default="clinician")
    q.add_argument("--reason", default="", help="required for BTG and ETREAT (break-glass)")
    q.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
    q.add_argument("--records", action="store_true",
                   help="(with --json) include the verified records")
    q.add_argument("--json", action="store_true")


def _roots(settings: Settings) -> RootSource:
    evm = settings.ledger.evm
    if settings.ledger.backend == "evm" and evm is not None:
        from ledger_client.backends import open_backend

        return LedgerRoots(open_backend("evm", rpc_url=evm.rpc_url, contract=evm.contract,
                                        chain_id=evm.chain_id))
    return CheckpointRoots()


def run_peer(args: argparse.Namespace, settings: Settings) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from adapters.peer.client import PeerClient
    from adapters.peer.tls import client_context
    from edge.signing import load_signing_key

    peer_settings = settings.peer
    if peer_settings is None:
        raise CLIError(exits.CONFIG, "hie-edge peer query: no [peer] section in the config")
    patient = patient_arg(args.patient, "peer query")
    directory = PeerDirectory.from_settings(peer_settings.peers)
    chosen = directory.all() if not args.peer else []
    for peer_id in args.peer:
        peer = directory.get(peer_id)
        if peer is None:
            raise CLIError(exits.USAGE, f"hie-edge peer query: {peer_id!r} is not in "
                           "[[peer.peers]]")
        chosen.append(peer)
    if not chosen:
        raise CLIError(exits.CONFIG, "hie-edge peer query: the peer directory is empty")
    if args.purpose in ("BTG", "ETREAT") and not args.reason.strip():
        raise CLIError(exits.USAGE, "hie-edge peer query: BTG/ETREAT need --reason")
    tls = peer_settings.tls
    try:
        der = x509.load_pem_x509_certificate(tls.cert.read_bytes()).public_bytes(Encoding.DER)
        key = load_signing_key(settings.keys.signing_key_file)
        context = client_context(cert=tls.cert, key=tls.key, ca=tls.ca, crl=tls.crl)
    except (OSError, ValueError) as exc:
        raise CLIError(exits.CONFIG, f"hie-edge peer query: cannot load our TLS certificate "
                       f"or signing key: {type(exc).__name__}") from None
    try:
        practitioner = args.practitioner or getpass.getuser()
    except (KeyError, OSError):
        practitioner = "unknown"
    spec = QuerySpec(f"{patient.system}|{patient.value}", args.purpose, practitioner,
                     args.role, args.reason)
    creds = Credentials(settings.facility.id, key, cert_thumbprint(der),
                        lifetime_s=int(min(60, peer_settings.jwt_max_age_s)))
    timeout = args.timeout or peer_settings.query_timeout_s

    async def go() -> list[PeerOutcome]:
        async with PeerClient(context, timeout_s=timeout) as client:
            return await query_peers(chosen, spec, client=client, creds=creds,
                                     roots=_roots(settings), timeout_s=timeout)

    outcomes = asyncio.run(go())
    report: list[dict[str, Any]] = [o.to_json(records=args.records) for o in outcomes]
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        for o in outcomes:
            print(f"{o.peer:<24} {o.status:<11} found {o.found:>4}  verified {o.verified:>4}"
                  f"  failures {len(o.failures):>3}{'  ' + o.detail if o.detail else ''}")
            for failure in o.failures:
                print(f"    {failure.resource}: {', '.join(failure.problems)}")
    if any(o.failures for o in outcomes):
        return exits.FAILURE
    if all(o.status in ("unavailable", "timeout") for o in outcomes):
        return exits.UNAVAILABLE
    return exits.OK
