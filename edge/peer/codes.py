"""Code systems, codes and URLs the peer API uses, in one place."""

from __future__ import annotations

from typing import Final

# HL7 v3 ActReason purposes of use (terminology.hl7.org CodeSystem v3-ActReason).
ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSES: Final = frozenset({"TREAT", "ETREAT", "BTG", "HPAYMT", "HOPERAT", "HRESCH", "PATRQT",
                             "PUBHLTH"})
BREAK_GLASS_PURPOSES: Final = frozenset({"BTG", "ETREAT"})
TREATMENT: Final = "TREAT"

# Security labels that need an explicit permit (issue 8): confidentiality R and V
# (v3-Confidentiality) and the sensitivity codes PSY, ETH, HIV, SDV (v3-ActCode).
CONFIDENTIALITY: Final = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SENSITIVE_LABELS: Final = frozenset({"R", "V", "PSY", "ETH", "HIV", "SDV"})

# Who a consent names: a facility of the consortium, or one practitioner of a facility
# (value ``facility-id/practitioner-id``).
FACILITY_SYSTEM: Final = "urn:hie-edge:facility"
PRACTITIONER_SYSTEM: Final = "urn:hie-edge:practitioner"

# The resource types the peer API serves (issue 8), besides Patient.
CLINICAL_TYPES: Final = ("AllergyIntolerance", "Condition", "DiagnosticReport",
                         "DocumentReference", "Encounter", "Immunization", "MedicationRequest",
                         "Observation")
SERVED_TYPES: Final = ("Patient", *CLINICAL_TYPES)

# Bundle.entry extensions: the ledger receipt (docs/ledger.md, JSON as valueString), or why
# an entry has none yet (its leaf is newer than the last anchored checkpoint).
RECEIPT_EXTENSION: Final = "urn:hie-edge:extension:ledger-receipt"
RECEIPT_PENDING_EXTENSION: Final = "urn:hie-edge:extension:ledger-receipt-pending"
