from __future__ import annotations

import uuid

import pytest

from edge.uuid7 import uuid7


def test_a_version_7_uuid_carries_the_millisecond_and_the_rfc_9562_bits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.uuid7.time.time_ns", lambda: 1_732_000_000_123_456_789)
    made = [uuid7() for _ in range(200)]
    assert len(set(made)) == 200  # 74 random bits each, one millisecond for all
    for value in made:
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert value.int >> 80 == 1_732_000_000_123  # unix_ts_ms (RFC 9562 5.7)


def test_later_milliseconds_sort_after_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_732_000_000_000_000_000, 1_732_000_001_000_000_000, 7_000_000))
    monkeypatch.setattr("edge.uuid7.time.time_ns", lambda: next(clock))
    made = [str(uuid7()) for _ in range(100)]
    assert made == sorted(made)  # as strings too: the index orders the text ids
