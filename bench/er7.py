"""Micro-benchmark of the ER7 layer against baselines measured in the same run.

Run: ``.venv/bin/python bench/er7.py [CORPORA_DIR]`` (default ../shared/corpora). Prints
messages per second for a ~20-segment ORU^R01 from the corpora and each rate's ratio to plain
``str.split`` into fields (the floor no parser can beat) and to python-hl7's ``hl7.parse``.
Takes about 10 s. Timings on shared machines drift: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import hl7
from _figures import record

from edge.er7 import parse, parse_header

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 1.5


def pick_oru(corpora: Path) -> tuple[str, bytes]:
    """The first corpus file (sorted) that is one ORU^R01 of 18-24 CR-separated segments."""
    for path in sorted(corpora.rglob("*.hl7")):
        raw = path.read_bytes()
        segments = [s for s in raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r") if s]
        if (
            raw.startswith(b"MSH|")
            and b"|ORU^R01" in segments[0]
            and 18 <= len(segments) <= 24
            and sum(s.startswith(b"MSH") for s in segments) == 1
        ):
            return path.relative_to(corpora).as_posix(), b"\r".join(segments) + b"\r"
    raise SystemExit("no 20-segment ORU^R01 in the corpora")


def rate(fn: Callable[[], object]) -> float:
    fn()  # warm up (caches, lazy imports)
    n = 0
    start = time.perf_counter()
    deadline = start + SECONDS
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    corpora = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "corpora"
    name, raw = pick_oru(corpora)
    text = raw.decode("latin-1")

    def str_split() -> object:
        return [segment.split("|") for segment in raw.decode("latin-1").split("\r") if segment]

    def header() -> object:
        return parse_header(raw)

    def parse_only() -> object:
        return parse(raw)

    def parse_all_fields() -> object:
        total = 0
        for segment in parse(raw):
            for n in range(1, len(segment) + 1):
                total += len(segment.field(n).raw)
        return total

    def parse_all_leaves() -> object:
        total = 0
        msg = parse(raw)
        sub = msg.delimiters.subcomponent
        for segment in msg:
            for n in range(1, len(segment) + 1):
                field = segment.field(n)
                for r in range(1, len(field.repetitions) + 1):
                    for c, component in enumerate(field.components(r), 1):
                        for s in range(1, component.count(sub) + 2):
                            total += len(field.component(c, s, r))
        return total

    def parse_all_values() -> object:
        total = 0
        for segment in parse(raw):
            for n in range(1, len(segment) + 1):
                total += len(segment.field(n).values())
        return total

    def python_hl7() -> object:
        return hl7.parse(text)

    msg = parse(raw)
    leaves = parse_all_leaves()
    print(f"message: {name} ({len(msg)} segments, {len(raw)} bytes, leaf chars {leaves})")
    rates = {
        "str.split into fields (baseline)": rate(str_split),
        "python-hl7 hl7.parse": rate(python_hl7),
        "parse_header": rate(header),
        "parse (lazy, nothing touched)": rate(parse_only),
        "parse + every field": rate(parse_all_fields),
        "parse + every leaf, Field.values()": rate(parse_all_values),
        "parse + every leaf, Field.component()": rate(parse_all_leaves),
    }
    base = rates["str.split into fields (baseline)"]
    py_hl7 = rates["python-hl7 hl7.parse"]
    print(f"{'':40} {'msg/s':>10} {'/ str.split':>12} {'/ python-hl7':>13}")
    for label, value in rates.items():
        print(f"{label:40} {value:10,.0f} {value / base:12.3f} {value / py_hl7:13.1f}")
        if label != "str.split into fields (baseline)":
            record("er7", label, value, "msg/s", baseline="str.split into fields",
                   baseline_value=base)


if __name__ == "__main__":
    main()
