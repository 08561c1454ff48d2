"""Generate ``edge/normalize/vocab/*.json`` from the HL7 v2-to-FHIR IG's vocabulary maps.

Reads the concept-map CSVs of the IG (``mappings/codesystems/*.csv`` in the corpora copy of
https://github.com/HL7/v2-to-fhir) and writes:

- ``concept_maps.json``: ``{map name: {"table": "HL7nnnn", "codes": {v2 code: [code, display,
  system]}}}``. Only rows that give a FHIR code are kept (a map with none is kept, empty);
  when a v2 code appears more than once (rows guarded by conditions) the first unconditioned
  row wins, else the first row.
- ``message_structures.json``: ``{"ADT_A04": "ADT_A01", ...}`` from the MessageStructure map
  (table 0354, whose text column lists the trigger events of each structure).
- ``ucum_units.json``: ``{"common": [UCUM codes], "v2_to_ucum": {v2 unit: UCUM code}}`` from
  the FHIR "UCUM common units" value set and the v2 (ISO+/ANSI+) to UCUM concept map, as
  packaged by IZ Gateway's v2tofhir (``ValueSet-ucum-common-units.json``,
  ``ConceptMap-v2-ucum-units.json``).

Run from the repository root::

    python scripts/gen_vocab.py [--mappings DIR] [--ucum DIR]

The output is committed; the IG content is CC0-1.0 (see vocab/NOTICE.md). Rerun after updating
the corpora copy of the IG; the output is sorted so diffs stay small.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
DEFAULT_MAPPINGS = CORPORA / "hl7-v2-to-fhir-ig" / "mappings"
DEFAULT_UCUM = CORPORA / "izgateway-v2tofhir"
OUT = ROOT / "edge" / "normalize" / "vocab"
_MAP_NAME = re.compile(r"^HL7 Concept Map_ (?P<name>.+?) - Sheet\d+\.csv$")
_EVENT = re.compile(r"\b([A-Z][A-Z0-9]{2})\b")


def _cell(row: list[str], i: int) -> str:
    return row[i].strip() if i < len(row) else ""


def read_concept_map(path: Path) -> tuple[str, dict[str, list[str]]]:
    """(v2 table id, {v2 code: [FHIR code, display, system]}) of one concept-map CSV."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    table = ""
    codes: dict[str, list[str]] = {}
    conditioned: set[str] = set()
    for row in rows[2:]:  # two header rows
        code, system_v2 = _cell(row, 0), _cell(row, 2)
        fhir_code, display, system = _cell(row, 6), _cell(row, 8) or _cell(row, 7), _cell(row, 9)
        if not code or not fhir_code:
            continue
        table = table or system_v2
        has_condition = bool(_cell(row, 3) or _cell(row, 4) or _cell(row, 5))
        if code in codes and (has_condition or code not in conditioned):
            continue
        codes[code] = [fhir_code, display, system]
        if has_condition:
            conditioned.add(code)
        else:
            conditioned.discard(code)
    return table, codes


def read_message_structures(path: Path) -> dict[str, str]:
    """{"<message code>_<event>": structure} from the MessageStructure (table 0354) map."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    out: dict[str, str] = {}
    for row in rows[2:]:
        structure, text = _cell(row, 0), _cell(row, 1)
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}_[A-Z0-9]{3}", structure):
            continue
        message_code = structure[:3]
        for event in _EVENT.findall(text):
            out.setdefault(f"{message_code}_{event}", structure)
        out.setdefault(structure, structure)
    return dict(sorted(out.items()))


def read_ucum(folder: Path) -> dict[str, object]:
    """The common UCUM codes and the v2 unit -> UCUM map (see the module docstring)."""
    value_set = json.loads((folder / "ValueSet-ucum-common-units.json").read_text("utf-8"))
    common = sorted(
        concept["code"]
        for include in value_set["compose"]["include"]
        for concept in include.get("concept", [])
    )
    concept_map = json.loads((folder / "ConceptMap-v2-ucum-units.json").read_text("utf-8"))
    v2_map: dict[str, str] = {}
    for group in concept_map["group"]:
        for element in group["element"]:
            targets = [t for t in element.get("target", []) if t.get("code")]
            if targets:
                v2_map.setdefault(element["code"], targets[0]["code"])
    return {"common": common, "v2_to_ucum": dict(sorted(v2_map.items()))}


def generate(mappings: Path, out: Path, ucum: Path | None = None) -> list[Path]:
    maps: dict[str, dict[str, object]] = {}
    structures: dict[str, str] = {}
    for path in sorted((mappings / "codesystems").glob("*.csv")):
        match = _MAP_NAME.match(path.name)
        if match is None:
            continue
        name = match.group("name")
        if name == "MessageStructure":
            structures = read_message_structures(path)
            continue
        table, codes = read_concept_map(path)
        # Kept even when empty (no v2 code maps to FHIR yet): the name stays valid.
        maps[name] = {"table": table, "codes": dict(sorted(codes.items()))}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    outputs: list[tuple[str, object]] = [
        ("concept_maps.json", maps),
        ("message_structures.json", structures),
    ]
    if ucum is not None:
        outputs.append(("ucum_units.json", read_ucum(ucum)))
    for file_name, data in outputs:
        target = out / file_name
        target.write_text(
            json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mappings", type=Path, default=DEFAULT_MAPPINGS)
    parser.add_argument("--ucum", type=Path, default=DEFAULT_UCUM)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.mappings / "codesystems").is_dir():
        print(f"no codesystems folder under {args.mappings}", file=sys.stderr)
        return 66
    for path in generate(args.mappings, args.out, args.ucum):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
