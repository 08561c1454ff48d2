from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from edge.heap import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.disable()  # no automatic collection frees the cycle before the function under test
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()  # the rest of the test session collects as usual


def test_startup_garbage_is_freed_and_the_live_heap_frozen(unfrozen: None) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle only the cyclic collector can free
    dead = weakref.ref(a)
    del a, b
    kept = [_Node() for _ in range(100)]
    before = gc.get_freeze_count()
    freeze_startup_heap()
    assert dead() is None  # collected first, not frozen forever
    assert gc.get_freeze_count() >= before + len(kept)
