from __future__ import annotations

import importlib.util
from pathlib import Path

from edge.er7 import parse
from edge.normalize import vocab
from edge.normalize.messages import REGISTRY
from edge.normalize.structure import message_structure

ROOT = Path(__file__).resolve().parents[3]


def test_committed_vocabulary_matches_the_generator(corpora_dir: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_vocab", ROOT / "scripts" / "gen_vocab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.generate(
        corpora_dir / "hl7-v2-to-fhir-ig" / "mappings", tmp_path, corpora_dir / "izgateway-v2tofhir"
    )
    committed = ROOT / "edge" / "normalize" / "vocab"
    for path in written:
        assert path.read_text() == (committed / path.name).read_text(), path.name
    assert (committed / "NOTICE.md").is_file()


def test_concept_maps() -> None:
    assert vocab.concept("AdministrativeSex", "F") == vocab.Concept(
        "female", "Female", "http://hl7.org/fhir/administrative-gender"
    )
    assert vocab.concept("ObservationResultStatusCodesInterpretation", "C") is not None
    assert vocab.concept("AdministrativeSex", "Q") is None
    assert vocab.ucum_for("mg/dL") == "mg/dL"
    assert vocab.ucum_for("mg/dl") is None


def test_structure_from_trigger_event_when_msh_9_3_is_missing() -> None:
    def structure(msh9: str) -> str:
        raw = f"MSH|^~\\&|A|B|C|D|2024||{msh9}|1|P|2.5\r".encode()
        return message_structure(parse(raw).header, REGISTRY)

    assert structure("ADT^A04") == "ADT_A01"
    assert structure("ADT^A40") == "ADT_A39"
    assert structure("ADT^A28^ADT") == "ADT_A05"
    assert structure("ORU^R01^ORU_R01") == "ORU_R01"
    assert structure("SIU^S14") == "SIU_S12"
