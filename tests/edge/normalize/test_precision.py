"""Decimal precision: an NM sent with trailing zeros keeps them through RFC 8785 canonical
JSON, as the standard quantity-precision extension on the decimal primitive."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from edge.normalize import NormalizeContext, normalize
from edge.normalize.datatypes.nm import PRECISION_URL, precision

MSH = "MSH|^~\\&|LAB|GENHOSP|EHR|GENHOSP|20240310013000||ORU^R01^ORU_R01|N1|P|2.5.1"
PID = "PID|1||12345^^^HOSP^MR||Doe^Jane||19700115|F"
OBR = "OBR|1||F1^LAB|24323-8^Metabolic panel^LN"


def oru(*obx: str) -> bytes:
    return ("\r".join([MSH, PID, OBR, *obx]) + "\r").encode()


def as_sent(element: dict[str, Any], key: str = "value") -> str:
    """The decimal text a receiver rebuilds from canonical JSON and the extension."""
    canonical = json.loads(rfc8785.dumps(element))
    number = Decimal(str(canonical[key]))
    kept = canonical.get(f"_{key}")
    if kept is None:
        return str(number)
    [ext] = kept["extension"]
    assert ext["url"] == PRECISION_URL
    return f"{number:.{ext['valueInteger']}f}"


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("1.50", 2),
        ("3.0", 1),
        ("0.10", 2),
        ("-2.500", 3),
        ("+7.0", 1),
        ("1.5", None),
        ("100", None),
        ("10.", None),
        (".50", 2),
        ("abc0", None),
        ("", None),
    ],
)
def test_precision_of_nm_text(text: str, digits: int | None) -> None:
    assert precision(text) == digits


def test_nm_quantity_keeps_trailing_zeros(ctx: NormalizeContext) -> None:
    result = normalize(
        oru(
            "OBX|1|NM|2345-7^Glucose^LN||5.40|mmol/L^^UCUM|||||F",
            "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L^^UCUM|||||F",
            "OBX|3|NM|2823-3^Potassium^LN||4.1|mmol/L^^UCUM|||||F",
            "OBX|4|NM|1751-7^Albumin^LN||<1.0|g/dL^^UCUM|||||F",
        ),
        context=ctx,
    )
    values = [o["valueQuantity"] for o in result.by_type("Observation")]
    assert [as_sent(v) for v in values] == ["5.40", "140", "4.1", "1.0"]
    assert "_value" not in values[1] and "_value" not in values[2]
    assert values[3]["comparator"] == "<"


def test_sn_range_and_ratio_keep_precision(ctx: NormalizeContext) -> None:
    result = normalize(
        oru(
            "OBX|1|SN|5048-4^ANA titer^LN||^1^:^160.0||||||F",
            "OBX|2|SN|2345-7^Glucose^LN||^3.50^-^5.0|mmol/L^^UCUM|||||F",
            "OBX|3|NR|2345-7^Glucose^LN|2|3.90^5.50||||||F",
        ),
        context=ctx,
    )
    ratio, range_, bounds = result.by_type("Observation")
    assert as_sent(ratio["valueRatio"]["denominator"]) == "160.0"
    assert as_sent(ratio["valueRatio"]["numerator"]) == "1"
    assert [as_sent(range_["valueRange"][k]) for k in ("low", "high")] == ["3.50", "5.0"]
    assert [as_sent(bounds["valueRange"][k]) for k in ("low", "high")] == ["3.90", "5.50"]


def test_corpus_newborn_screening_ratios(corpora_dir: Path, ctx: NormalizeContext) -> None:
    # CDPH newborn screening results send "0.62500" and "850.00": the zeros are precision.
    path = corpora_dir / "cdc-trusted-intermediary/Test/Automated/003_CA_ORU_R01_CDPH_produced.hl7"
    result = normalize(path.read_bytes(), context=ctx)
    texts = {
        as_sent(o["valueQuantity"]) for o in result.by_type("Observation") if "valueQuantity" in o
    }
    assert {"0.62500", "0.01000"} <= texts
    kept = [
        o["valueQuantity"]
        for o in result.by_type("Observation")
        if "_value" in o.get("valueQuantity", {})
    ]
    assert kept and all(q["_value"]["extension"][0]["url"] == PRECISION_URL for q in kept)
