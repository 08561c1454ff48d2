"""Benchmark: HL7 v2 -> FHIR R4 normalization, beside python-hl7's parse-only rate.

Messages: a 20-segment ORU^R01 (MSH PID PV1 ORC OBR + 15 OBX) and a typical ADT^A01 (MSH EVN
PID PD1 NK1 PV1 PV2 AL1 DG1 IN1), generated with distinct identifiers and values per message.
Printed, for each: python-hl7 ``hl7.parse`` (parse only, the baseline), our tokenizer alone,
and our whole path as a worker runs it (tokenize -> map -> validate -> RFC 8785 JSON of each
resource, ready to store: ``edge.processing.worker.convert``) with validation ``full``
(every resource through its R4B model) and ``shape`` (R4B model once per resource shape, our
own checks always), in one process and in two worker processes (the 2-core target: at least
1,000 ORU^R01 per second end to end). Ratios are against python-hl7 measured in this run.

    .venv/bin/python bench/normalize.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hl7
from _figures import record

from edge.er7 import parse
from edge.normalize import NormalizeContext
from edge.processing.worker import Converted, convert

_TESTS = [
    ("2345-7", "Glucose", "mg/dL", "70-99"),
    ("2160-0", "Creatinine", "mg/dL", "0.6-1.3"),
    ("2951-2", "Sodium", "mmol/L", "135-145"),
    ("2823-3", "Potassium", "mmol/L", "3.5-5.1"),
    ("2075-0", "Chloride", "mmol/L", "98-107"),
]


def oru(i: int) -> bytes:
    segments = [
        f"MSH|^~\\&|LAB|GENHOSP^2.16.840.1.113883.3.1234^ISO|EHR|GENHOSP|20240310013{i % 10}"
        f"||ORU^R01^ORU_R01|MSG{i:08d}|P|2.5.1",
        f"PID|1||{100000 + i}^^^HOSP^MR||Doe{i}^Jane^Q||19{50 + i % 50}0{1 + i % 9}15|F|||"
        f"{i} Main St^^Springfield^IL^62701||^PRN^PH^^1^217^555{i % 10000:04d}",
        f"PV1|1|O|CLINIC^101^1^GENHOSP||||1234^Welby^Marcus^^^Dr|||||||||||V{i:07d}^^^HOSP^VN",
        f"ORC|RE|P{i}^EHR|F{i}^LAB||CM||||20240310010000",
        f"OBR|1|P{i}^EHR|F{i}^LAB|24323-8^Comprehensive metabolic panel^LN|||20240310010000|||"
        f"||||||1234^Welby^Marcus|||||20240310013000|||F",
    ]
    for k in range(15):
        loinc, name, unit, rng = _TESTS[k % len(_TESTS)]
        flag = "H" if (i + k) % 7 == 0 else "N"
        segments.append(
            f"OBX|{k + 1}|NM|{loinc}^{name}^LN|{k // 5 + 1}|{(i * 7 + k) % 150 + 0.5}|"
            f"{unit}^{unit}^UCUM|{rng}|{flag}|||F|||20240310010000"
        )
    return ("\r".join(segments) + "\r").encode()


def adt(i: int) -> bytes:
    segments = [
        f"MSH|^~\\&|ADT|GENHOSP|EHR|GENHOSP|20240310013{i % 10}||ADT^A01^ADT_A01|A{i:08d}|P|2.5.1",
        "EVN|A01|20240310013000",
        f"PID|1||{200000 + i}^^^HOSP^MR~{900000000 + i}^^^SSA^SS||Roe{i}^John^A^Jr||19{60 + i % 40}"
        f"0{1 + i % 9}2{i % 9}|M||2106-3^White^CDCREC|{i} Oak Ave^Apt 2^Chicago^IL^60601^^H||"
        f"^PRN^PH^^1^312^555{i % 10000:04d}~^NET^Internet^john{i}@example.org|||M",
        "PD1|||GENHOSP CLINIC",
        f"NK1|1|Roe^Mary|SPO^Spouse^HL70063|{i} Oak Ave^^Chicago^IL^60601|^PRN^PH^^1^312^5550000",
        f"PV1|1|I|4W^401^A^GENHOSP||||5678^Kildare^James^^^Dr|||MED||||7|||5678^Kildare^James|||"
        f"||||||||||||||||||||||||20240310010000|||V{i:07d}",
        "PV2|||chest pain",
        "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives|20200101",
        "DG1|1||I20.9^Angina pectoris, unspecified^I10||20240310|A",
        "IN1|1|PPO123^Gold PPO|INS001|Acme Health^^^^^^^^^^^^INS001|||||||||20240101|20241231|||"
        "SEL^Self^HL70063",
    ]
    return ("\r".join(segments) + "\r").encode()


def rate(fn: Callable[[bytes], object], messages: list[bytes], seconds: float) -> float:
    """Messages per second for ``fn`` over ``messages``, repeated for about ``seconds``."""
    for raw in messages[:20]:
        fn(raw)  # warm caches (vocabulary, models)
    done = 0
    start = time.perf_counter()
    while True:
        for raw in messages:
            fn(raw)
        done += len(messages)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


_CTX = {
    mode: NormalizeContext(facility_id="bench", timezone="America/Chicago", validation=mode)
    for mode in ("full", "shape")
}


def end_to_end(mode: str) -> Callable[[bytes], object]:
    """What a worker process does per inbox message (edge.processing.worker.convert):
    tokenize, map, validate, and serialize every resource to its RFC 8785 JSON with its
    blind-index terms, ready for the store."""
    ctx = _CTX[mode]

    def run(raw: bytes) -> object:
        outcome = convert(raw, "hl7v2", ctx)
        if not isinstance(outcome, Converted):
            raise SystemExit(f"bench message did not convert: {outcome.reason}")
        return outcome

    return run


def _worker(job: tuple[str, str, int, float]) -> float:
    kind, mode, offset, seconds = job
    make = oru if kind == "ORU" else adt
    messages = [make(offset + i) for i in range(500)]
    return rate(end_to_end(mode), messages, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    s = args.seconds
    for kind, make in (("ORU^R01 (20 segments)", oru), ("ADT^A01 (10 segments)", adt)):
        messages = [make(i) for i in range(500)]
        baseline = rate(lambda raw: hl7.parse(raw.decode()), messages, s)
        tokenize = rate(lambda raw: [seg.fields for seg in parse(raw)], messages, s)
        print(f"{kind}")
        print(f"  python-hl7 parse only (baseline)      {baseline:9.0f} msg/s   1.00x")
        print(
            f"  edge.er7 tokenize (all fields split)  {tokenize:9.0f} msg/s "
            f"{tokenize / baseline:6.2f}x"
        )
        record("normalize", f"{kind}: edge.er7 tokenize", tokenize, "msg/s",
               baseline="python-hl7 parse", baseline_value=baseline)
        for mode in ("full", "shape"):
            one = rate(end_to_end(mode), messages, s)
            print(
                f"  end to end, validation={mode:5s} 1 proc {one:9.0f} msg/s {one / baseline:6.2f}x"
            )
            record("normalize", f"{kind}: end to end, validation={mode}, 1 proc", one, "msg/s",
                   baseline="python-hl7 parse", baseline_value=baseline)
        short = "ORU" if kind.startswith("ORU") else "ADT"
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            for mode in ("full", "shape"):
                rates = pool.map(_worker, [(short, mode, 0, s), (short, mode, 10_000, s)])
                total = sum(rates)
                print(
                    f"  end to end, validation={mode:5s} 2 proc {total:9.0f} msg/s "
                    f"{total / baseline:6.2f}x"
                )
                record("normalize", f"{kind}: end to end, validation={mode}, 2 proc", total,
                       "msg/s", baseline="python-hl7 parse", baseline_value=baseline)
    print("target: >= 1,000 ORU^R01 msg/s end to end on 2 processes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
