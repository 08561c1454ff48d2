"""The root of every error raised by the adapters (the edges that touch the outside)."""

from __future__ import annotations


class AdapterError(Exception):
    """Base of all adapter errors."""
