"""What the FHIR API tests share."""

from __future__ import annotations

from typing import Any


class NoWrites:
    """Stands in for a part of the service (inbox, processor, committer) the test's requests
    must never reach: any use of it fails the test, naming the attribute used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the test's requests reached a part they must not use ({name})")
