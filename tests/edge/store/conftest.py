"""Fixtures for the store tests: a migrated database, a KEK file, the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.store.resources import ResourceStore
from tests.edge.store.store_support import Env, make_env


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


@pytest.fixture
def conn(env: Env) -> Iterator[sqlite3.Connection]:
    c = env.connect()
    yield c
    c.close()


@pytest.fixture
def store(env: Env) -> ResourceStore:
    return ResourceStore(env.keys())
