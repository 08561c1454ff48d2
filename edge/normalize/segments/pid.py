"""PID -> Patient (v2-to-FHIR IG PID[Patient]).

PID-2/3/4 -> identifier (CX); PID-19 -> identifier (SSN, http://hl7.org/fhir/sid/us-ssn);
PID-5 -> name; PID-6 -> mothersMaidenName; PID-7 -> birthDate (+ patient-birthTime when a time
was sent); PID-8 -> gender (AdministrativeSex); PID-10/22 -> US Core race/ethnicity; PID-11 ->
address (PID-12 county when one address); PID-13/14/40 -> telecom; PID-15 -> communication;
PID-16 -> maritalStatus; PID-17 -> religion; PID-24/25 -> multipleBirth; PID-29/30 ->
deceased.

The Patient's id is derived from its primary identifier (the first PID-3 with type MR, else
the first PID-3, else PID-2, else PID-4): ``facility + system + value``, so every message about
the same patient updates one resource. ``patient_key`` (``system|value``) is what the store
keys the patient's data by.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import cx, dtm, xad, xpn, xtn
from edge.normalize.datatypes.cwe import code_from_map, codeable_concept

__all__ = ["map_pid", "patient_id_for"]

_SD: Final = "http://hl7.org/fhir/StructureDefinition/"
_US_CORE: Final = "http://hl7.org/fhir/us/core/StructureDefinition/"
_CDCREC: Final = "urn:oid:2.16.840.1.113883.6.238"
# US Core race/ethnicity OMB categories (CDC Race & Ethnicity code set 1.0); legacy text
# codes some senders use are read too (IZ Gateway golden messages send "ASIAN").
_OMB_RACE: Final = {
    "1002-5": "American Indian or Alaska Native",
    "2028-9": "Asian",
    "2054-5": "Black or African American",
    "2076-8": "Native Hawaiian or Other Pacific Islander",
    "2106-3": "White",
}
_LEGACY_RACE: Final = {
    "ASIAN": "2028-9",
    "WHITE": "2106-3",
    "BLACK": "2054-5",
    "W": "2106-3",
    "B": "2054-5",
    "A": "2028-9",
    "I": "1002-5",
}
_GENDER_WORDS: Final = frozenset({"male", "female", "other", "unknown"})
_OMB_ETHNICITY: Final = {"2135-2": "Hispanic or Latino", "2186-5": "Not Hispanic or Latino"}
_LEGACY_ETHNICITY: Final = {
    "H": "2135-2",
    "N": "2186-5",
    "HISPANIC": "2135-2",
    "NOT HISPANIC": "2186-5",
    "NON HISPANIC": "2186-5",
}


def administrative_gender(conv: Conversion, sex: str, path: str) -> str | None:
    """Patient.gender for a table-0001 code (AdministrativeSex map). Senders also write the
    word (``female``); anything else is dropped with a warning: gender has a required
    binding, and guessing ``unknown`` would state something the sender did not."""
    gender = code_from_map(sex.upper(), "AdministrativeSex")
    if gender is None and sex.lower() in _GENDER_WORDS:
        gender = sex.lower()
    if gender is None:
        conv.warnings.append(f"{path}: administrative sex not in table 0001")
    return gender


def patient_id_for(conv: Conversion, identifiers: list[dict[str, Any]]) -> str | None:
    """Choose the primary identifier, set ``conv.patient_key``; return the Patient id."""
    if not identifiers:
        return None
    primary = next(
        (
            i
            for i in identifiers
            if any(c.get("code") == "MR" for c in i.get("type", {}).get("coding", []))
        ),
        identifiers[0],
    )
    conv.patient_key = f"{primary['system']}|{primary['value']}"
    return conv.make_id("Patient", primary["system"], primary["value"])


def _omb_extension(
    url: str, reps: list[Any], omb: dict[str, str], legacy: dict[str, str]
) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    texts: list[str] = []
    for v in reps:
        code = v[1]
        cdc = code if code in omb else legacy.get(code.upper()) or legacy.get(v[2].upper())
        if cdc:
            parts.append(
                {
                    "url": "ombCategory",
                    "valueCoding": {"system": _CDCREC, "code": cdc, "display": omb[cdc]},
                }
            )
        elif code and (v[3].upper() == "CDCREC" or "-" in code):
            parts.append({"url": "detailed", "valueCoding": {"system": _CDCREC, "code": code}})
        text = v[2] or code
        if text:
            texts.append(text)
    if not texts:
        return None
    parts.append({"url": "text", "valueString": ", ".join(dict.fromkeys(texts))})
    return {"url": url, "extension": parts}


def map_pid(conv: Conversion, seg: Segment) -> str:
    """Add the Patient for ``seg``; sets ``conv.patient_ref``; returns the reference."""
    ctx, zone = conv.ctx, conv.ctx.zone
    msh4 = conv.message.segments("MSH")[0]
    default_authority = conv.first(msh4, 4)
    patient: dict[str, Any] = {"resourceType": "Patient"}
    identifiers: list[dict[str, Any]] = []
    for n in (3, 2, 4):
        for i, v in enumerate(conv.reps(seg, n), 1):
            ident = cx.identifier(
                v,
                ctx,
                f"{conv.loc(seg, n)}[{i}]" if i > 1 else conv.loc(seg, n),
                default_authority=default_authority,
                warn=conv.warnings,
            )
            if ident is not None:
                identifiers.append(ident)
    ssn = conv.value(seg, 19)
    if ssn:
        identifiers.append(
            {
                "type": {"coding": [{"system": cx.V2_0203, "code": "SS"}]},
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": ssn,
            }
        )
    patient_id = patient_id_for(conv, identifiers)
    patient["id"] = patient_id or conv.message_scoped_id("Patient", str(seg.index))
    if identifiers:
        patient["identifier"] = identifiers
    extensions: list[dict[str, Any]] = []
    maiden = conv.first(seg, 6)
    if maiden is not None and maiden[1]:
        extensions.append({"url": f"{_SD}patient-mothersMaidenName", "valueString": maiden[1]})
    race = _omb_extension(f"{_US_CORE}us-core-race", conv.reps(seg, 10), _OMB_RACE, _LEGACY_RACE)
    if race:
        extensions.append(race)
    ethnicity = _omb_extension(
        f"{_US_CORE}us-core-ethnicity", conv.reps(seg, 22), _OMB_ETHNICITY, _LEGACY_ETHNICITY
    )
    if ethnicity:
        extensions.append(ethnicity)
    religion = codeable_concept(conv.first(seg, 17), ctx, concept_map="Religion")
    if religion:
        extensions.append({"url": f"{_SD}patient-religion", "valueCodeableConcept": religion})
    birth_place = conv.value(seg, 23)
    if birth_place:
        extensions.append(
            {"url": f"{_SD}patient-birthPlace", "valueAddress": {"text": birth_place}}
        )
    names = []
    for n in (5, 9):
        for v in conv.reps(seg, n):
            name = xpn.human_name(v, zone, conv.loc(seg, n), warn=conv.warnings)
            if name is not None:
                names.append(name)
    if names:
        patient["name"] = names
    telecom = []
    for n, use in ((13, "home"), (14, "work"), (40, None)):
        for v in conv.reps(seg, n):
            point = xtn.contact_point(
                v, zone, conv.loc(seg, n), default_use=use, warn=conv.warnings
            )
            if point is not None:
                telecom.append(point)
    if telecom:
        patient["telecom"] = telecom
    sex = conv.value(seg, 8)
    if sex:
        gender = administrative_gender(conv, sex, conv.loc(seg, 8))
        if gender is not None:
            patient["gender"] = gender
    birth = conv.first(seg, 7)
    if birth is not None and birth[1]:
        path = conv.loc(seg, 7)
        birth_date = dtm.to_date(birth[1], path, warn=conv.warnings)
        if birth_date is not None:
            patient["birthDate"] = birth_date
            birth_time = dtm.to_datetime(birth[1], zone, path, warn=conv.warnings)
            if dtm.has_time(birth[1]) and birth_time is not None:
                patient["_birthDate"] = {
                    "extension": [{"url": f"{_SD}patient-birthTime", "valueDateTime": birth_time}]
                }
    death = conv.first(seg, 29)
    if death is not None and death[1]:
        deceased = dtm.to_datetime(death[1], zone, conv.loc(seg, 29), warn=conv.warnings)
        if deceased is not None:
            patient["deceasedDateTime"] = deceased
    else:
        dead = conv.value(seg, 30).upper()
        if dead in ("Y", "N"):
            patient["deceasedBoolean"] = dead == "Y"
    addresses = []
    for v in conv.reps(seg, 11):
        address = xad.address(v, zone, conv.loc(seg, 11), warn=conv.warnings)
        if address is not None:
            addresses.append(address)
    county = conv.value(seg, 12)
    if county and len(addresses) == 1 and "district" not in addresses[0]:
        addresses[0]["district"] = county
    if addresses:
        patient["address"] = addresses
    marital = codeable_concept(conv.first(seg, 16), ctx, concept_map="MaritalStatus")
    if marital:
        patient["maritalStatus"] = marital
    order = conv.value(seg, 25)
    if order.isdigit():
        patient["multipleBirthInteger"] = int(order)
    else:
        multiple = conv.value(seg, 24).upper()
        if multiple in ("Y", "N"):
            patient["multipleBirthBoolean"] = multiple == "Y"
    language = codeable_concept(conv.first(seg, 15), ctx)
    if language:
        patient["communication"] = [{"language": language}]
    if extensions:
        patient["extension"] = extensions
    reference = conv.add(patient)
    if conv.patient_ref is None:
        conv.patient_ref = reference
    return reference
