"""atheris target: HL7 v2 → FHIR R4 (:func:`edge.normalize.normalize`).

Declared errors: :class:`edge.normalize.NormalizeError` (and its subclass
``UnsupportedMessage``). A message that converts must also be storable: every resource has
an RFC 8785 form (the ledger leaf) -- otherwise the processing stage would fail on it.
"""

from __future__ import annotations

import _harness
import atheris  # type: ignore[import-untyped]  # no complete stubs

with atheris.instrument_imports():
    from edge.normalize import NormalizeContext, NormalizeError, normalize
    from ledger_client.leaf import canonical_json

CONTEXT = NormalizeContext("fuzz-facility", timezone="America/Chicago",
                           identifier_systems={"HOSP": "urn:oid:2.16.840.1.113883.3.1234"})


def one_input(data: bytes) -> None:
    try:
        result = normalize(data, context=CONTEXT)
    except NormalizeError:
        return
    for resource in result.resources:
        canonical_json(resource)


def seeds() -> list[bytes]:
    return _harness.corpus_messages()


if __name__ == "__main__":
    _harness.main("normalize", one_input, max_len=32 * 1024, seeds=seeds)
