"""Helpers shared by the normalization tests."""

from __future__ import annotations

from typing import Any

from edge.normalize import NormalizedMessage


def resource(result: NormalizedMessage, reference: dict[str, str]) -> dict[str, Any]:
    """The one resource of ``result`` a ``{"reference": "Type/id"}`` points at."""
    resource_type, resource_id = reference["reference"].split("/", 1)
    found = [r for r in result.by_type(resource_type) if r["id"] == resource_id]
    assert len(found) == 1, reference
    return found[0]
