from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from edge.config import ConfigError, Settings, load_config, parse_config, resolve_config_path
from edge.config.model import Bind

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "edge.example.toml"
MINIMAL = '[facility]\nid = "gh"\n'


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="edge.toml")
    return info.value.problems


def test_minimal_config_gets_defaults() -> None:
    settings = parse_config(MINIMAL)
    assert settings.facility.id == "gh"
    assert settings.ledger.backend == "local"
    assert settings.mllp == ()
    assert str(settings.admin.bind) == "127.0.0.1:9100"


def test_port_out_of_range_names_the_key() -> None:
    text = MINIMAL + '[[mllp]]\nname = "adt"\nbind = "127.0.0.1:70000"\n'
    assert problems(text) == ["mllp[0].bind: port 70000 is not in 0..65535"]


def test_unknown_keys_are_errors_at_any_depth() -> None:
    text = MINIMAL + 'colour = "red"\n[storage]\ndirr = "/x"\n[[mllp]]\nname="a"\nbind="h:1"\nack_mode="x"\n'
    assert sorted(problems(text)) == [
        "facility.colour: unknown key",
        "mllp[0].ack_mode: unknown key",
        "storage.dirr: unknown key",
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = (
        '[facility]\nid = "Bad Id"\ntimezone = "Mars/Olympus"\n'
        '[facility.identifier_systems]\nHOSP = "not a uri"\n'
        '[[mllp]]\nname = "adt"\nbind = "nohostport"\nack = "whenever"\nallow = ["10.0.0.0/33"]\n'
    )
    found = problems(text)
    assert any(p.startswith("facility.id: ") for p in found)
    assert "facility.timezone: 'Mars/Olympus' is not an IANA time zone" in found
    assert any(p.startswith("facility.identifier_systems: HOSP:") for p in found)
    assert any(p.startswith("mllp[0].bind: expected HOST:PORT") for p in found)
    assert any(p.startswith("mllp[0].ack: ") for p in found)
    assert any(p.startswith("mllp[0].allow: ") for p in found)


def test_missing_required_key_and_bad_toml() -> None:
    assert problems("[storage]\n") == ["facility: required key is missing"]
    [bad_toml] = problems("[facility\n")
    assert bad_toml.startswith("not valid TOML: ")


def test_duplicate_listener_names_and_evm_without_table() -> None:
    text = MINIMAL + '[[mllp]]\nname="a"\nbind="h:1"\n[[mllp]]\nname="a"\nbind="h:2"\n'
    assert problems(text) == ["mllp: listener names must be unique: a"]
    assert problems(MINIMAL + '[ledger]\nbackend = "evm"\n') == [
        "ledger: backend 'evm' needs a [ledger.evm] table"]


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:2575", "127.0.0.1", 2575), ("[::1]:0", "::1", 0), ("host.example:1", "host.example", 1),
])
def test_bind_parsing(text: str, host: str, port: int) -> None:
    bind = Bind.parse(text)
    assert (bind.host, bind.port) == (host, port)
    assert Bind.parse(str(bind)) == bind


def test_settings_are_frozen() -> None:
    settings = parse_config(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        settings.facility.id = "other"  # type: ignore[misc]


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(MINIMAL + '[storage]\ndir = "data"\n[keys]\nkek_file = "keys/kek"\n')
    settings = load_config(config)
    assert settings.storage.dir == tmp_path / "data"
    assert settings.keys.kek_file == tmp_path / "keys" / "kek"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.problems == ["file not found"]


def test_config_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIE_EDGE_CONFIG", raising=False)
    assert resolve_config_path(None) == Path("/etc/hie-edge/edge.toml")
    monkeypatch.setenv("HIE_EDGE_CONFIG", "/tmp/x.toml")
    assert resolve_config_path(None) == Path("/tmp/x.toml")
    assert resolve_config_path("/a/b.toml") == Path("/a/b.toml")


# -- the example config documents the model exactly (design.md, "examples to follow" 13) --

def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        keys.add(path)
        for candidate in _nested_models(field.annotation):
            keys |= _model_keys(candidate, path + ".")
    return keys


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [] if annotation is Bind else [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found += _nested_models(arg)
    return found


def _toml_keys(node: Any, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(node, list):
        for item in node:
            keys |= _toml_keys(item, prefix)
        return keys
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            keys.add(path)
            # identifier_systems is a free-form table: its keys are data, not settings.
            if isinstance(value, (dict, list)) and not path.endswith("identifier_systems"):
                keys |= _toml_keys(value, path + ".")
    return keys


def test_example_config_is_valid() -> None:
    settings = load_config(EXAMPLE)
    assert isinstance(settings, Settings)


def test_example_config_documents_every_key_of_the_model() -> None:
    documented = _toml_keys(tomllib.loads(EXAMPLE.read_text()))
    assert _model_keys(Settings) == documented
