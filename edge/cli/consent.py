"""``hie-edge consent grant|revoke|list --patient SYSTEM|VALUE``: the patient's consents to
peer access (see :mod:`edge.peer.consent`).

Works on the database directly, next to a running daemon (WAL; the writer lock serializes
it with the daemon's group commit); the next peer request sees the change. Every command is
itself audited (an AuditEvent with the operator's login as the user). Output names consent
ids, never patient data.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from edge.cli import exits
from edge.cli.database import database_for
from edge.cli.exits import CLIError
from edge.cli.integrity import integrity_message
from edge.config import Settings
from edge.crypto.blind_index import parse_identifier_token
from edge.crypto.errors import IndexInputError, IntegrityError, KeyFileError, UnknownKeyError
from edge.crypto.keys import load_keyring
from edge.peer import consent as consents
from edge.peer.audit import Actor, AuditRecord, build_audit_event, write_audit
from edge.peer.codes import PURPOSES, SENSITIVE_LABELS
from edge.peer.errors import ConsentInputError
from edge.peer.patients import by_ref
from edge.storage.errors import StorageError
from edge.store._tx import write_transaction
from edge.store.keys import PatientRef, StoreKeys
from edge.store.resources import ResourceStore

T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction, parser_class: type,  # type: ignore[type-arg]
               config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``consent`` subcommand's arguments (the handler is :func:`run_consent`)."""
    p = sub.add_parser("consent", help="grant, revoke and list a patient's consents",
                       description="grant, revoke and list a patient's consents to peer access")
    config_option(p)
    csub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    csub.required = True
    g = csub.add_parser("grant", help="record a consent (permit, or --deny)")
    r = csub.add_parser("revoke", help="make a consent inactive")
    ls = csub.add_parser("list", help="list the patient's consents")
    for q in (g, r, ls):
        config_option(q)
        q.add_argument("--patient", required=True, metavar="SYSTEM|VALUE")
        q.add_argument("--json", action="store_true")
    g.add_argument("--facility", action="append", default=[], metavar="ID",
                   help="a member facility allowed (repeat; none = every member)")
    g.add_argument("--practitioner", action="append", default=[], metavar="FACILITY/ID")
    g.add_argument("--purpose", action="append", default=[], choices=sorted(PURPOSES),
                   help="purpose of use allowed (repeat; none = every purpose)")
    g.add_argument("--type", action="append", default=[], dest="types", metavar="RESOURCE",
                   help="resource type allowed (repeat; none = every type)")
    g.add_argument("--category", action="append", default=[], metavar="CODE")
    g.add_argument("--label", action="append", default=[], choices=sorted(SENSITIVE_LABELS),
                   help="sensitive label explicitly permitted (repeat)")
    g.add_argument("--start", type=date.fromisoformat, metavar="YYYY-MM-DD")
    g.add_argument("--end", type=date.fromisoformat, metavar="YYYY-MM-DD")
    g.add_argument("--deny", action="store_true", help="a consent that denies instead")
    r.add_argument("consent_id", metavar="CONSENT_ID")


def patient_arg(text: str, command: str) -> PatientRef:
    try:
        system, value = parse_identifier_token(text)
        if not value.strip():
            raise IndexInputError("identifier", "identifier value is empty")
    except IndexInputError:
        raise CLIError(exits.USAGE, f"hie-edge {command}: --patient must be SYSTEM|VALUE "
                       "(|VALUE for an identifier without a system)") from None
    return PatientRef(system, value)


def local_actor(settings: Settings) -> Actor:
    """The operator running the command, as an audit actor."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "uid-unknown"
    return Actor("local", settings.facility.id, f"local/{user}", "operator")


def with_store(settings: Settings, command: str,
               work: Callable[[sqlite3.Connection, ResourceStore], T]) -> T:
    """Run ``work`` in one write transaction on the state database, mapping failures to
    exit statuses."""
    with database_for(settings, command) as conn:
        try:
            store = ResourceStore(StoreKeys(lambda: load_keyring(settings.keys.kek_file)))
            with write_transaction(conn):
                return work(conn, store)
        except (KeyFileError, UnknownKeyError) as exc:
            raise CLIError(exits.CONFIG, f"hie-edge {command}: {exc}") from None
        except ConsentInputError as exc:
            raise CLIError(exits.DATAERR, f"hie-edge {command}: {exc}") from None
        except IntegrityError as exc:
            # EX_DATAERR and main's line for it (edge.cli.integrity), with this command's
            # name and what it means here: the transaction, the command's own AuditEvent
            # included, was rolled back.
            raise CLIError(exits.DATAERR, f"hie-edge {command}: {integrity_message(exc)}; "
                           "nothing was done") from None
        except StorageError as exc:
            raise CLIError(exits.IOERR, f"hie-edge {command}: {exc}") from None


def _summary(consent: dict[str, Any]) -> str:
    provision = consent.get("provision", {})
    who = [a["reference"]["identifier"]["value"] for a in provision.get("actor", [])]
    parts = [f"{consent.get('id')}  {consent.get('status')}  {provision.get('type')}",
             f"to {', '.join(who) or 'every member'}",
             f"for {', '.join(c['code'] for c in provision.get('purpose', [])) or 'any purpose'}"]
    classes = [c["code"] for c in provision.get("class", [])]
    if classes:
        parts.append(f"types {', '.join(classes)}")
    labels = [c["code"] for c in provision.get("securityLabel", [])]
    if labels:
        parts.append(f"labels {', '.join(labels)}")
    period = provision.get("period")
    if period:
        parts.append(f"{period.get('start', '…')}..{period.get('end', '…')}")
    return "  ".join(parts)


def run_consent(args: argparse.Namespace, settings: Settings) -> int:
    command = f"consent {args.action}"
    patient = patient_arg(args.patient, command)
    actor = local_actor(settings)
    now = datetime.now(UTC)
    facility = settings.facility.id
    if args.action == "grant":
        spec = consents.ConsentSpec(
            facilities=tuple(args.facility), practitioners=tuple(args.practitioner),
            purposes=tuple(args.purpose), classes=tuple(args.types),
            categories=tuple(args.category), labels=tuple(args.label), start=args.start,
            end=args.end, deny=args.deny)
        result = [with_store(settings, command, lambda conn, store: consents.grant(
            conn, store, patient, spec, actor=actor, facility=facility, now=now))]
    elif args.action == "revoke":
        result = [with_store(settings, command, lambda conn, store: consents.revoke(
            conn, store, patient, args.consent_id, actor=actor, facility=facility, now=now))]
    else:
        def listing(conn: sqlite3.Connection, store: ResourceStore) -> list[dict[str, Any]]:
            row = by_ref(conn, store, patient)
            if row is None:
                raise ConsentInputError("no record of that patient here")
            found = consents.list_consents(conn, store, patient)
            write_audit(conn, store, [build_audit_event(AuditRecord(
                "admin-read", "0", actor, now, patient_id=row.id, data_classes=("Consent",),
                released=len(found)), facility=facility)], patient)
            return found

        result = with_store(settings, command, listing)
    if args.json:
        json.dump(result if args.action == "list" else result[0], sys.stdout, indent=2)
        print()
    else:
        for consent in result:
            print(_summary(consent))
        if not result:
            print("no consents on file")
    return exits.OK
