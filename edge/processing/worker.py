"""What runs in the worker processes: one message in, a picklable outcome out.

Normalization is CPU-bound pure Python (tokenize, map, validate); worker processes let both
cores work while the event loop keeps acknowledging (issue 4). Outcomes are plain tuples and
dataclasses, never exceptions: an exception class with a custom constructor does not always
survive pickling, and a lost error is a lost reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.normalize import normalize
from edge.normalize.context import NormalizeContext
from edge.normalize.errors import NormalizeError
from edge.normalize.normalize import UnsupportedMessage
from edge.normalize.result import NormalizedMessage


@dataclass(frozen=True, slots=True)
class Failed:
    """Why a message did not convert: a path and a reason, no values."""

    state: str  # "dead-letter" or "unsupported"
    reason: str


Outcome = NormalizedMessage | Failed


def convert(raw: bytes, context: NormalizeContext) -> Outcome:
    try:
        return normalize(raw, context=context)
    except UnsupportedMessage as exc:
        return Failed("unsupported", str(exc))
    except NormalizeError as exc:
        return Failed("dead-letter", str(exc))
