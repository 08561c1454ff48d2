"""``hie-edge audit --patient SYSTEM|VALUE``: the patient's accounting of disclosures, from
the AuditEvents stored under the patient's key (see :mod:`edge.peer.audit`). Reading it is
itself an administrative access, audited after the listing is taken."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge.cli import exits
from edge.cli.consent import local_actor, patient_arg, with_store
from edge.config import Settings
from edge.peer.audit import AuditRecord, audit_trail, build_audit_event, summarize, write_audit
from edge.peer.errors import ConsentInputError
from edge.peer.patients import by_ref
from edge.store.resources import ResourceStore


def add_parser(sub: argparse._SubParsersAction, parser_class: type,  # type: ignore[type-arg]
               config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``audit`` subcommand's arguments (the handler is :func:`run_audit`)."""
    p = sub.add_parser("audit", help="a patient's accounting of accesses and disclosures")
    config_option(p)
    p.add_argument("--patient", required=True, metavar="SYSTEM|VALUE")
    p.add_argument("--full", action="store_true", help="(with --json) whole AuditEvents")
    p.add_argument("--json", action="store_true")


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    patient = patient_arg(args.patient, "audit")
    actor = local_actor(settings)

    def read(conn: sqlite3.Connection, store: ResourceStore) -> list[dict[str, Any]]:
        row = by_ref(conn, store, patient)
        if row is None:
            raise ConsentInputError("no record of that patient here")
        events = audit_trail(conn, store, patient)
        write_audit(conn, store, [build_audit_event(AuditRecord(
            "admin-read", "0", actor, datetime.now(UTC), patient_id=row.id,
            data_classes=("AuditEvent",), released=len(events)),
            facility=settings.facility.id)], patient)
        return events

    events = with_store(settings, "audit", read)
    if args.json:
        json.dump(events if args.full else [summarize(e) for e in events], sys.stdout,
                  indent=2)
        print()
        return exits.OK
    for event in map(summarize, events):
        flag = "  BREAK-GLASS" if event["break_glass"] else ""
        classes = ",".join(event["data_classes"]) or "-"
        print(f"{event['recorded']}  {event['event']:<16} {event['outcome']:<8} "
              f"{event['facility'] or settings.facility.id:<20} {event['user'] or '-'} "
              f"({event['role'] or '-'})  purpose {event['purpose'] or '-'}  "
              f"released {event['released']} [{classes}]{flag}")
    if not events:
        print("no accesses recorded")
    return exits.OK
