"""The leaf's canonical JSON fast path gives RFC 8785's bytes for every resource we make."""

from __future__ import annotations

from pathlib import Path

import rfc8785

from edge.normalize import NormalizeContext, NormalizeError, normalize
from ledger_client.leaf import _json_layout, _Layout, canonical_json
from tests.corpus import iter_single_messages


def test_every_converted_corpus_resource_canonicalizes_like_rfc8785(corpora_dir: Path) -> None:
    context = NormalizeContext(facility_id="jcs-check", timezone="America/Chicago")
    checked = fast = 0
    for _, raw in iter_single_messages(corpora_dir):
        try:
            message = normalize(raw, context=context)
        except NormalizeError:
            continue
        for resource in message.resources:
            assert canonical_json(resource) == rfc8785.dumps(resource)
            checked += 1
            fast += _json_layout(resource) is not _Layout.RFC8785
    assert checked > 5000
    assert fast > checked // 2  # the fast path is the common one
