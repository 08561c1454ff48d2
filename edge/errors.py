"""The root of every error raised by the ``edge`` package.

Each error says whose fault it is (``fault``: "peer" for bad input from a sender, "config"
for an operator's mistake, "internal" for ours, "environment" for disk/network trouble) and
whether retrying the same operation later can succeed. Messages never contain PHI: they name
field paths (``PID-3.4``), row ids and control ids, never values.
"""

from __future__ import annotations

from typing import Literal

Fault = Literal["peer", "config", "internal", "environment"]


class EdgeError(Exception):
    """Base of all hie-edge errors."""

    fault: Fault = "internal"
    retriable: bool = False
