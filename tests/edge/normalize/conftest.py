from __future__ import annotations

import pytest

from edge.er7 import parse
from edge.normalize import NormalizeContext
from edge.normalize.v2 import Composite


@pytest.fixture
def ctx() -> NormalizeContext:
    return NormalizeContext(
        facility_id="general-hospital",
        timezone="America/Chicago",
        identifier_systems={"HOSP": "urn:oid:2.16.840.1.113883.3.1234"},
        validation="full",
    )


def composite(text: str) -> Composite:
    """A field repetition written in ER7 with the default delimiters."""
    message = parse(f"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\rZZZ|{text}\r")
    segment = message.segment("ZZZ")
    assert segment is not None
    return Composite(segment.raw_field(1), 0, message.delimiters, message.codec)
