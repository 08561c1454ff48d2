"""Fixtures for the fault-injection tests (the real daemon's fixtures, shared)."""

from __future__ import annotations

from tests.integration.conftest import notify_socket

__all__ = ["notify_socket"]
