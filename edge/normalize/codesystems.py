"""HL7 v2 coding system names (table 0396, CWE-3/6/12) and OIDs -> FHIR code system URIs.

The URIs are those FHIR R4 lists in "Using Codes in Resources", section 4.3.0.1
(terminologies-systems) and HL7 Terminology (THO) for the v2 tables; the v2-to-FHIR IG uses
the same (its CWE[CodeableConcept] map: CWE-3 "via HL7 Table 0396 to FHIR system"). A name we
do not know is a local code system: it gets a facility-scoped URI so the code stays usable and
its origin visible, instead of a system we would have to invent globally.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["UCUM", "system_for_name", "system_for_oid"]

UCUM: Final = "http://unitsofmeasure.org"
LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"

_BY_NAME: Final[dict[str, str]] = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNOMED": SNOMED,
    "SNOMEDCT": SNOMED,
    "SNOMED-CT": SNOMED,
    "I10": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "UCUM": UCUM,
    "ANS+": UCUM,
    "ISO+": UCUM,
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://hl7.org/fhir/sid/mvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "CPT4": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "HCPT": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
    "NUCC": "http://nucc.org/provider-taxonomy",
    "HCPTNUCC": "http://nucc.org/provider-taxonomy",
    "ISO3166_1": "urn:iso:std:iso:3166",
    "ISO3166": "urn:iso:std:iso:3166",
    "ISO639": "urn:ietf:bcp:47",
    "NPI": "http://hl7.org/fhir/sid/us-npi",
    "PHINQUESTION": "urn:oid:2.16.840.1.114222.4.5.232",
    "PLR": "urn:oid:2.16.840.1.114222.4.5.274",
    "PHINVS": "urn:oid:2.16.840.1.114222.4.5.274",
    "CDCPHINVS": "urn:oid:2.16.840.1.114222.4.5.274",
    "NCI": "http://ncimeta.nci.nih.gov",
    "UML": "http://www.nlm.nih.gov/research/umls",
    "UMLS": "http://www.nlm.nih.gov/research/umls",
}

_BY_OID: Final[dict[str, str]] = {
    "2.16.840.1.113883.6.1": LOINC,
    "2.16.840.1.113883.6.96": SNOMED,
    "2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
    "2.16.840.1.113883.6.103": "http://hl7.org/fhir/sid/icd-9-cm",
    "2.16.840.1.113883.6.8": UCUM,
    "2.16.840.1.113883.12.292": "http://hl7.org/fhir/sid/cvx",
    "2.16.840.1.113883.12.227": "http://hl7.org/fhir/sid/mvx",
    "2.16.840.1.113883.6.69": "http://hl7.org/fhir/sid/ndc",
    "2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "2.16.840.1.113883.4.6": "http://hl7.org/fhir/sid/us-npi",
}

# HL7 v2 tables: "HL70001", "HL7-0001", "HL7 0001" -> THO v2 code systems.
_HL7_TABLE: Final = re.compile(r"^HL7[-_ ]?(\d{4})$", re.IGNORECASE)
_OID: Final = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")


def system_for_oid(oid: str) -> str:
    """The FHIR URI for a code system or namespace OID (known systems by name, else urn:oid)."""
    return _BY_OID.get(oid, f"urn:oid:{oid}")


def is_oid(text: str) -> bool:
    return bool(_OID.match(text))


def system_for_name(name: str) -> str | None:
    """The FHIR URI of a v2 coding system name, or ``None`` when it is not a known one.

    Accepts table-0396 mnemonics (``LN``), v2 tables (``HL70203``), OIDs and URIs.
    """
    known = _BY_NAME.get(name) or _BY_NAME.get(name.upper())
    if known is not None:
        return known
    table = _HL7_TABLE.match(name)
    if table is not None:
        return f"http://terminology.hl7.org/CodeSystem/v2-{table.group(1)}"
    if _OID.match(name):
        return system_for_oid(name)
    if name.startswith(("http://", "https://", "urn:")) and " " not in name:
        return name
    return None
