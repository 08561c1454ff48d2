"""ADT (admit, discharge, transfer) message maps (v2-to-FHIR IG ADT_A01, ADT_A02, ADT_A05,
ADT_A06, ADT_A09, ADT_A11, ADT_A17; A39/A40 merge).

- ADT_A01 (A01, A04, A08, A13): Patient, Encounter, RelatedPerson, Observation (OBX),
  AllergyIntolerance, Condition, Procedure, Coverage.
- ADT_A02 (transfer), ADT_A03 (discharge), ADT_A09 (A11 cancel admit...): the same maps; the
  Encounter's status follows the trigger event (Event[EncounterStatus]) and its locations the
  PV1, so the update lands on the Encounter of the visit number (PV1-19).
- ADT_A05 (A05, A14, A28, A31) and ADT_A06: person information (A28 add, A31 update).
- ADT_A39 (A40 merge): each PID + MRG pair; the MRG patient is marked replaced by the PID one.
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="ADT",
        structures=frozenset(
            {"ADT_A01", "ADT_A02", "ADT_A03", "ADT_A05", "ADT_A06", "ADT_A09", "ADT_A39"}
        ),
    ),
)
