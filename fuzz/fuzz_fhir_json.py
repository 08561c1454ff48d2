"""atheris target: FHIR JSON intake (:func:`edge.normalize.fhir_json.normalize_fhir`).

Declared errors: :class:`edge.normalize.NormalizeError`. An envelope that is accepted must be
storable: every resource has an RFC 8785 form.
"""

from __future__ import annotations

import _harness
import atheris  # type: ignore[import-untyped]  # no complete stubs

with atheris.instrument_imports():
    from edge.normalize import NormalizeContext, NormalizeError, normalize
    from edge.normalize.fhir_json import SUPPORTED_TYPES, envelope, normalize_fhir
    from ledger_client.leaf import canonical_json

CONTEXT = NormalizeContext("fuzz-facility")


def one_input(data: bytes) -> None:
    try:
        result = normalize_fhir(data, context=CONTEXT)
    except NormalizeError:
        return
    for resource in result.resources:
        canonical_json(resource)


def seeds() -> list[bytes]:
    """Envelopes around the resources our own converter makes from corpus messages."""
    out = []
    for index, raw in enumerate(_harness.corpus_messages(120)):
        try:
            resources = normalize(raw, context=CONTEXT).resources
        except NormalizeError:
            continue
        entries = [{"method": "PUT", "type": r["resourceType"], "id": r["id"],
                    "fullUrl": f"urn:uuid:{r['id']}", "resource": r}
                   for r in resources if r["resourceType"] in SUPPORTED_TYPES]
        if entries:
            out.append(envelope("transaction", f"seed-{index}", entries, {}))
            out.append(envelope("update", f"seed-{index}-1", entries[:1], {}))
    return out


if __name__ == "__main__":
    _harness.main("fhir_json", one_input, max_len=64 * 1024, seeds=seeds)
