from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    """The shared test corpora (data written by other projects; read, never copied)."""
    if not CORPORA.is_dir():
        pytest.fail(f"test corpora not found at {CORPORA}: "
                    "CI must run with ../shared beside the checkout")
    return CORPORA
