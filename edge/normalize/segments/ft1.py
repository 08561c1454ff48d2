"""FT1 (financial transaction, HL7 v2.5.1 section 6.5.1) -> ChargeItem (FHIR R4 section 16.x
"ChargeItem"), for DFT_P03.

The v2-to-FHIR IG has no FT1 segment map (its message maps ``ORU_R01``, ``OML_O21`` and
``ORM_O01`` list FT1 with no target, and no ``FT1[ChargeItem]`` sheet exists in the IG's
mappings), so this map is ours, field by field from the v2.5.1 definitions to the R4
ChargeItem elements of the same meaning:

- FT1-2 (transaction id) -> identifier; FT1-4 (DR) -> occurrenceDateTime / occurrencePeriod;
  FT1-5 (posting date) -> enteredDate; FT1-7 (transaction code, CWE) -> code, with FT1-8
  (description) as its text when CWE-2 is empty; FT1-25 (procedure code) when FT1-7 is empty;
- FT1-10 (quantity, NM) -> quantity (its precision kept); FT1-19 (diagnosis) -> reason;
  FT1-20 (performed by, XCN) -> performer.actor; FT1-24 (entered by) -> enterer;
- subject -> the Patient, context -> the Encounter (PV1); status ``billable`` (a charge that
  was posted to the account).

Only charges are ChargeItems: FT1-6 (transaction type, table 0017) ``CG`` or empty. Credits,
payments and adjustments (``CD``, ``PY``, ``AJ``) are not mapped (a warning names the field).
Amounts (FT1-11/12/22, CP) have no R4 ChargeItem element (``priceOverride`` overrides a
ChargeItemDefinition's price, which a v2 amount is not) and are not mapped.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dr, dtm, ei, nm, xcn
from edge.normalize.datatypes.cwe import codeable_concept
from edge.normalize.errors import NormalizeError

__all__ = ["map_ft1"]

_CHARGE_TYPES: Final = frozenset({"", "CG"})


def map_ft1(conv: Conversion, seg: Segment) -> str | None:
    """Add the ChargeItem for FT1 ``seg``; its reference, or ``None`` when not a charge."""
    ctx, zone = conv.ctx, conv.ctx.zone
    if conv.value(seg, 6).upper() not in _CHARGE_TYPES:
        conv.warnings.append(f"{conv.loc(seg, 6)}: not a charge (table 0017), not mapped")
        return None
    subject = conv.subject()
    if subject is None:
        raise NormalizeError(conv.loc(seg), "no patient for this charge (PID missing)")
    charge_code = conv.first(seg, 7)
    code = codeable_concept(charge_code, ctx)
    description = conv.text(seg, 8)
    has_display = charge_code is not None and bool(charge_code[2])
    if code is not None and description and "text" not in code and not has_display:
        code["text"] = description
    if code is None:
        code = codeable_concept(conv.first(seg, 25), ctx)
    if code is None and description:
        code = {"text": description}
    transaction = conv.first(seg, 2)
    when = conv.first(seg, 4)
    key = (
        ("ft1-2", transaction[1], transaction[2])
        if transaction is not None and transaction[1]
        else (
            subject["reference"],
            charge_code.text() if charge_code is not None else "",
            when.text() if when is not None else "",
        )
    )
    charge: dict[str, Any] = {
        "resourceType": "ChargeItem",
        "id": conv.unique_id("ChargeItem", *key),
    }
    identifier = ei.identifier(transaction, ctx, conv.loc(seg, 2))
    if identifier is not None:
        charge["identifier"] = [identifier]
    charge["status"] = "billable"
    if code is not None:
        charge["code"] = code
    else:  # ChargeItem.code is 1..1
        conv.absent(charge, "code", conv.loc(seg, 7), "transaction code is empty")
    charge["subject"] = subject
    if conv.encounter_ref:
        charge["context"] = {"reference": conv.encounter_ref}
    dr.period_or_datetime(charge, "occurrence",
                          *dr.bounds(when, zone, conv.loc(seg, 4), conv.warnings))
    performers = []
    for v in conv.reps(seg, 20):
        actor = xcn.practitioner(conv, v, conv.loc(seg, 20))
        if actor is not None:
            performers.append({"actor": actor})
    if performers:
        charge["performer"] = performers
    amount = conv.value(seg, 10)
    number = nm.parse_number(amount) if amount else None
    if number is not None:
        charge["quantity"] = nm.quantity(number, None, text=amount)
    elif amount:
        conv.warnings.append(f"{conv.loc(seg, 10)}: not a valid NM, not mapped")
    enterer = xcn.practitioner(conv, conv.first(seg, 24), conv.loc(seg, 24))
    if enterer is not None:
        charge["enterer"] = enterer
    entered = dtm.to_datetime(conv.value(seg, 5), zone, conv.loc(seg, 5), warn=conv.warnings)
    if entered:
        charge["enteredDate"] = entered
    reasons = [c for c in (codeable_concept(v, ctx) for v in conv.reps(seg, 19)) if c]
    if reasons:
        charge["reason"] = reasons
    return conv.add(charge)
