"""Helpers to compare our FHIR output with another converter's on clinical content only.

Expected outputs in the corpora "show one converter's choices, not the truth" (corpora
README): ids, references, system URIs, extensions and metadata differ by design. What must
agree is the clinical content: identifier values, names, birth dates, gender, codes, values,
units, statuses and times. :func:`facts` extracts those as ``(element name, value)`` pairs;
times are normalized to UTC instants so ``2023-08-16T12:33:58-05:00`` equals
``2023-08-16T17:33:58Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

CLINICAL_KEYS = frozenset(
    {
        "family",
        "given",
        "prefix",
        "suffix",
        "birthDate",
        "gender",
        "code",
        "unit",
        "line",
        "city",
        "state",
        "postalCode",
        "country",
        "district",
        "effectiveDateTime",
        "deceasedDateTime",
        "occurrenceDateTime",
        "valueString",
        "lotNumber",
        "collectedDateTime",
        "issued",
        "authoredOn",
        "start",
        "end",
        "recorded",
    }
)
SKIP_KEYS = frozenset(
    {
        "extension",
        "modifierExtension",
        "meta",
        "id",
        "reference",
        "system",
        "url",
        "fullUrl",
        "request",
        "_system",
    }
)


def _normal(key: str, value: Any) -> Any:
    if isinstance(value, str) and "T" in value and value[:4].isdigit() and len(value) > 10:
        text = value.replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).isoformat()
    return value


def facts(
    node: Any, keys: frozenset[str] = CLINICAL_KEYS, parent: str = ""
) -> set[tuple[str, Any]]:
    """The ``(element, value)`` pairs of ``node`` for element names in ``keys``."""
    out: set[tuple[str, Any]] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SKIP_KEYS:
                continue
            if key in keys and not isinstance(value, (dict, list)):
                out.add((key, _normal(key, value)))
            elif key in keys and isinstance(value, list):
                out.update((key, _normal(key, v)) for v in value if not isinstance(v, (dict, list)))
            out.update(facts(value, keys, key))
    elif isinstance(node, list):
        for item in node:
            out.update(facts(item, keys, parent))
    return out


def bundle_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle.get("entry", [])]
