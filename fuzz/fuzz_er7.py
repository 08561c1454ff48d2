"""atheris target: the ER7 tokenizer (:mod:`edge.er7`).

Declared errors: :class:`edge.er7.ER7Error` (the peer's fault, naming a location). A message
that parses must be walkable to the last subcomponent with the same rule.
"""

from __future__ import annotations

import _harness
import atheris  # type: ignore[import-untyped]  # no complete stubs

with atheris.instrument_imports():
    from edge.er7 import ER7Error, parse


def one_input(data: bytes) -> None:
    try:
        message = parse(data)
        for segment in message:
            for n in range(1, len(segment) + 1):
                field = segment.field(n)
                field.values()
                field.text()
                for rep in range(1, len(field.repetitions) + 1):
                    field.components(rep)
    except ER7Error:
        pass


def seeds() -> list[bytes]:
    return _harness.corpus_messages()


if __name__ == "__main__":
    _harness.main("er7", one_input, max_len=64 * 1024, seeds=seeds)
