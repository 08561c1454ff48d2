"""What every atheris target shares: seed corpora built from the shared test corpora, and
libFuzzer defaults that make "nothing hangs, memory stays bounded" part of every run.

Run a target (from the repository root)::

    .venv/bin/python fuzz/fuzz_er7.py                      # until stopped
    .venv/bin/python fuzz/fuzz_er7.py -max_total_time=600  # ten minutes
    .venv/bin/python fuzz/fuzz_er7.py -runs=2000           # a fixed number of inputs

With no corpus directory on the command line, the target uses ``build/fuzz/<target>/`` (or
``$HIE_FUZZ_DIR/<target>/``; git ignores ``build/``) and seeds it from ``../shared/corpora``
on first use: the corpora are read, never copied into the repository. Crashes are written
beside it (``-artifact_prefix``).

Defaults (any given on the command line wins):

- ``-timeout=10``: an input that takes longer than 10 s is reported as a hang;
- ``-rss_limit_mb=1024`` and ``-malloc_limit_mb=1024``: memory beyond that is a failure;
- ``-max_len``: each target's bound on input size (inputs are bounded, so is the work).

A target's ``one_input`` may raise only its declared errors (caught inside it); anything else
escapes to libFuzzer, which reports the input as a crash and exits non-zero.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPORA = REPO_ROOT.parent / "shared" / "corpora"
sys.path.insert(0, str(REPO_ROOT))  # so targets import edge/adapters run from anywhere

DEFAULTS = {"timeout": "10", "rss_limit_mb": "1024", "malloc_limit_mb": "1024"}
# Seeds per target (HIE_FUZZ_MAX_SEEDS): enough variety; the CI smoke run takes fewer.
MAX_SEEDS = int(os.environ.get("HIE_FUZZ_MAX_SEEDS", "400"))


def corpus_messages(limit: int = MAX_SEEDS) -> list[bytes]:
    """Single HL7 v2 messages from the shared corpora (via tests/corpus.py's rules), spread
    over the whole corpus when only some are taken."""
    if not CORPORA.is_dir():
        return []
    from tests.corpus import iter_single_messages

    messages = [raw for _, raw in iter_single_messages(CORPORA)]
    step = max(1, len(messages) // max(1, min(limit, MAX_SEEDS)))
    return messages[::step][:min(limit, MAX_SEEDS)]


def _write_seeds(directory: Path, seeds: Iterable[bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        name = hashlib.sha1(seed).hexdigest()  # noqa: S324 - a file name, not security
        (directory / name).write_bytes(seed)


def _with_defaults(argv: list[str], name: str, max_len: int,
                   seeds: Callable[[], Iterable[bytes]]) -> list[str]:
    flags = [a for a in argv[1:] if a.startswith("-")]
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    given = {f.lstrip("-").split("=", 1)[0] for f in flags}
    extra = [f"-{key}={value}" for key, value in {**DEFAULTS, "max_len": str(max_len)}.items()
             if key not in given]
    if not dirs:
        work = Path(os.environ.get("HIE_FUZZ_DIR", REPO_ROOT / "build" / "fuzz")) / name
        corpus = work / "corpus"
        if not corpus.is_dir() or not any(corpus.iterdir()):
            _write_seeds(corpus, (s[:max_len] for s in seeds()))
        dirs = [str(corpus)]
        if "artifact_prefix" not in given:
            extra.append(f"-artifact_prefix={work}/")
    return [argv[0], *flags, *extra, *dirs]


def main(name: str, one_input: Callable[[bytes], None], *, max_len: int,
         seeds: Callable[[], Iterable[bytes]]) -> None:
    """Set up atheris for ``one_input`` and fuzz until libFuzzer's limits say stop."""
    import atheris  # type: ignore[import-untyped]  # no complete stubs

    atheris.Setup(_with_defaults(sys.argv, name, max_len, seeds), one_input)
    atheris.Fuzz()
