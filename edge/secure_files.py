"""Writing secrets to disk: created with mode 0400 from the first byte (never chmod after),
flushed, and never overwriting an existing file."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes, *, mode: int = 0o400) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def group_or_world_accessible(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o077)
