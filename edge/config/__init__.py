"""Typed, frozen configuration: the TOML file's shape (see config/edge.example.toml)."""

from edge.config.loader import ConfigError, load_config, parse_config, resolve_config_path
from edge.config.model import Bind, Settings

__all__ = ["Bind", "ConfigError", "Settings", "load_config", "parse_config", "resolve_config_path"]
