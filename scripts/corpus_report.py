"""Convert every HL7 v2 message of the shared corpora and report the success rate.

Prints the rate per corpus folder and per message structure over the *supported* structures
(those :mod:`edge.normalize.messages` maps), then each failure (message id, HL7/FHIR path,
reason: never content). Messages the intake would already reject (no usable MSH: empty
MSH-9/10/12, broken encoding characters) and structures we do not map are counted apart.

    .venv/bin/python scripts/corpus_report.py [--corpora DIR] [--timezone ZONE]
        [--validation full|shape]

Exit status 0 when the rate over supported structures is at least 99%, else 1.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.er7 import ER7Error, parse  # noqa: E402
from edge.normalize import (  # noqa: E402
    NormalizeContext,
    NormalizeError,
    UnsupportedMessage,
    normalize,
)
from edge.normalize.messages import REGISTRY  # noqa: E402
from edge.normalize.structure import message_structure  # noqa: E402
from tests.corpus import iter_all_messages  # noqa: E402

TARGET = 0.99


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    parser.add_argument("--timezone", default="America/Chicago")
    parser.add_argument("--validation", choices=("full", "shape"), default="full")
    args = parser.parse_args(argv)
    ctx = NormalizeContext(
        facility_id="corpus-report", timezone=args.timezone, validation=args.validation
    )
    by_folder: dict[str, Counter[str]] = defaultdict(Counter)
    by_structure: dict[str, Counter[str]] = defaultdict(Counter)
    failures: list[tuple[str, str, str]] = []
    rejected = unsupported = 0
    unsupported_types: Counter[str] = Counter()
    for message_id, raw in iter_all_messages(args.corpora):
        folder = message_id.split("/", 1)[0]
        try:
            structure = message_structure(parse(raw).header, REGISTRY)
        except ER7Error:
            rejected += 1
            continue
        try:
            normalize(raw, context=ctx)
        except UnsupportedMessage:
            unsupported += 1
            unsupported_types[structure] += 1
            continue
        except NormalizeError as exc:
            by_folder[folder]["fail"] += 1
            by_structure[structure]["fail"] += 1
            failures.append((message_id, exc.path, exc.reason))
            continue
        except Exception as exc:  # noqa: BLE001 - a bug of ours: report it with the rest, by type only
            by_folder[folder]["fail"] += 1
            by_structure[structure]["fail"] += 1
            failures.append((message_id, "CRASH", f"{type(exc).__name__} at {_where(exc)}"))
            continue
        by_folder[folder]["ok"] += 1
        by_structure[structure]["ok"] += 1

    def rate(c: Counter[str]) -> str:
        total = c["ok"] + c["fail"]
        return f"{c['ok']:5d}/{total:<5d} {100.0 * c['ok'] / total:6.2f}%" if total else "-"

    print("per folder (supported structures):")
    for folder in sorted(by_folder):
        print(f"  {folder:40s} {rate(by_folder[folder])}")
    print("per message structure:")
    for structure in sorted(by_structure):
        print(f"  {structure:40s} {rate(by_structure[structure])}")
    total: Counter[str] = Counter()
    for c in by_folder.values():
        total.update(c)
    print(f"total (supported): {rate(total)}")
    print(f"rejected before normalization (unusable MSH, intake would NAK): {rejected}")
    print(
        f"unsupported structures (stored, not converted): {unsupported} "
        f"({', '.join(f'{k} {v}' for k, v in unsupported_types.most_common())})"
    )
    if failures:
        print("failures:")
        for message_id, path, reason in failures:
            print(f"  {message_id}: {path}: {reason}")
    converted = total["ok"] + total["fail"]
    return 0 if converted and total["ok"] / converted >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
