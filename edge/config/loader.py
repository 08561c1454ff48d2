"""Reading ``edge.toml``: TOML → :class:`Settings`, with every error naming its key path.

Only the CLI turns a :class:`ConfigError` into an exit status (78, EX_CONFIG).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.config.model import Settings
from edge.errors import EdgeError

DEFAULT_CONFIG_PATH = Path("/etc/hie-edge/edge.toml")
ENV_VAR = "HIE_EDGE_CONFIG"

# Settings fields holding paths: relative values are taken from the config file's folder, so
# an instance made by ``hie-edge init`` can be moved or backed up as one directory.
_PATH_KEYS = {("storage", "dir"), ("keys", "kek_file"), ("keys", "signing_key_file"),
              ("tls", "cert"), ("tls", "key"), ("tls", "client_ca"), ("tls", "ca"),
              ("tls", "crl"), ("evm", "key_file"), ("fhir", "tokens_file"),
              ("sources", "bearer_token_file"), ("webhook", "secret_file")}


class ConfigError(EdgeError):
    """The configuration is wrong. ``problems`` holds one ``path: reason`` line each."""

    fault = "config"

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


def resolve_config_path(cli_value: str | None) -> Path:
    """``--config``, else ``$HIE_EDGE_CONFIG``, else /etc/hie-edge/edge.toml."""
    if cli_value:
        return Path(cli_value)
    from_env = os.environ.get(ENV_VAR)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(path: Path) -> Settings:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.__class__.__name__}"]) from None
    return parse_config(text, source=str(path), base_dir=path.resolve().parent)


def parse_config(text: str, *, source: str = "<config>", base_dir: Path | None = None) -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    if base_dir is not None:
        data = _resolve_paths(data, base_dir, ())
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(error) for error in exc.errors()]) from None


def _resolve_paths(node: Any, base: Path, trail: tuple[str, ...]) -> Any:
    if isinstance(node, Mapping):
        return {
            key: str(base / value)
            if trail and (trail[-1], key) in _PATH_KEYS and isinstance(value, str)
            else _resolve_paths(value, base, (*trail, key))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_resolve_paths(item, base, trail) for item in node]
    return node


def _describe(error: Any) -> str:
    """One line per problem: ``mllp[0].bind: port 70000 is not in 0..65535``."""
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith("function-") and part not in ("str", "Bind"):
            path += f".{part}" if path else part
    kind = error["type"]
    if kind == "extra_forbidden":
        reason = "unknown key"
    elif kind == "missing":
        reason = "required key is missing"
    else:
        reason = error["msg"].removeprefix("Value error, ")
    return f"{path or '<top>'}: {reason}"
