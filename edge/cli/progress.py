"""Progress bars for long operations, on a terminal only (tqdm on stderr); a pipe, a file
or systemd gets nothing, so scripted output stays parseable."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator


def iterate(items: Iterator[int], *, total: int, desc: str) -> Iterator[int]:
    if not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return iter(tqdm(items, total=total, desc=desc, unit="item", file=sys.stderr))


def counter(total: int, *, desc: str) -> Callable[[int], None]:
    """A callback taking the running count done so far."""
    if not sys.stderr.isatty():
        return lambda done: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="item", file=sys.stderr)

    def update(done: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update
