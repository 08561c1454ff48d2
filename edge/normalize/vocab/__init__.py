"""Vocabulary data generated from the HL7 v2-to-FHIR IG (``scripts/gen_vocab.py``).

:func:`concept` looks a v2 code up in one of the IG's concept maps (``AdministrativeSex``,
``IdentifierType``, ``PatientClass[EncounterClass]``...); :func:`structure_for` gives the
message structure of a message code and trigger event (table 0354). The JSON files beside this
module are generated, committed, and loaded once per process on first use.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

__all__ = [
    "Concept",
    "concept",
    "concept_map_names",
    "concept_map_table",
    "structure_for",
    "ucum_for",
]


class Concept(NamedTuple):
    code: str
    display: str
    system: str


def _load(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@cache
def _maps() -> dict[str, dict[str, Concept]]:
    raw: dict[str, dict[str, Any]] = _load("concept_maps.json")
    return {
        name: {code: Concept(*target) for code, target in entry["codes"].items()}
        for name, entry in raw.items()
    }


@cache
def _tables() -> dict[str, str]:
    raw: dict[str, dict[str, Any]] = _load("concept_maps.json")
    return {name: str(entry.get("table", "")) for name, entry in raw.items()}


@cache
def _structures() -> dict[str, str]:
    data: dict[str, str] = _load("message_structures.json")
    return data


@cache
def _ucum() -> tuple[frozenset[str], dict[str, str]]:
    data: dict[str, Any] = _load("ucum_units.json")
    return frozenset(data["common"]), dict(data["v2_to_ucum"])


def concept_map_names() -> list[str]:
    return sorted(_maps())


def concept_map_table(map_name: str) -> str:
    """The v2 table a concept map's codes come from (``"HL70487"``), ``""`` when the IG's map
    names none. Raises ``KeyError`` for an unknown map name."""
    return _tables()[map_name]


def concept(map_name: str, code: str) -> Concept | None:
    """The FHIR concept the IG maps v2 ``code`` to in ``map_name``, or ``None``.

    Raises ``KeyError`` for an unknown map name (a programming error, caught by tests).
    """
    table = _maps()[map_name]
    found = table.get(code)
    if found is None and code != code.upper():
        found = table.get(code.upper())
    return found


def structure_for(message_code: str, trigger_event: str) -> str | None:
    """The abstract message structure for ``message_code^trigger_event`` (table 0354)."""
    return _structures().get(f"{message_code}_{trigger_event}")


def ucum_for(unit: str) -> str | None:
    """The UCUM code for a unit written ``unit``: itself when it is a common UCUM unit, the
    mapped code when it is a known v2 (ISO+/ANSI+) unit, else ``None``."""
    common, v2_map = _ucum()
    if unit in common:
        return unit
    return v2_map.get(unit)
