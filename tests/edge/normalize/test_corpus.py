"""At least 99% of the corpus messages of supported structures convert and validate."""

from __future__ import annotations

from pathlib import Path

from edge.er7 import ER7Error, parse
from edge.normalize import NormalizeContext, NormalizeError, UnsupportedMessage, normalize
from edge.normalize.messages import REGISTRY
from edge.normalize.structure import message_structure
from tests.corpus import iter_all_messages


def test_supported_corpus_messages_convert(corpora_dir: Path) -> None:
    ctx = NormalizeContext(facility_id="corpus", timezone="America/Chicago", validation="full")
    converted, failed = 0, []
    for message_id, raw in iter_all_messages(corpora_dir):
        try:
            header = parse(raw).header
        except ER7Error:
            continue  # intake NAKs these: they never reach normalization
        if message_structure(header, REGISTRY) not in REGISTRY:
            continue
        try:
            normalize(raw, context=ctx)
        except UnsupportedMessage:
            continue
        except NormalizeError as exc:
            failed.append(f"{message_id}: {exc}")
        converted += 1
    assert converted > 850
    assert len(failed) <= converted // 100, "\n".join(failed)


def test_errors_never_quote_message_content(corpora_dir: Path) -> None:
    strict = NormalizeContext(facility_id="corpus", unmapped_authority="dead-letter")
    for message_id, raw in iter_all_messages(corpora_dir)[:400]:
        try:
            normalize(raw, context=strict)
        except NormalizeError as exc:
            message = str(exc)
            try:
                pid = parse(raw).segment("PID")
            except ER7Error:
                continue
            if pid is not None:
                family = pid.field(5).component(1)
                if len(family) > 3:
                    assert family not in message, message_id
