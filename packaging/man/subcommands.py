#!/usr/bin/env python3
"""Print a help2man include section with every subcommand's ``--help``.

Usage: PYTHON subcommands.py   (PYTHON: the interpreter that can import edge)

help2man reads only the top-level ``--help``; the subcommands' options would be missing from
the man page. This asks the real parser (edge.cli.main.build_parser), so the page cannot drift
from the CLI. Output is help2man include syntax: a ``[COMMANDS]`` section in roff.
"""

from __future__ import annotations

import argparse
import os
import sys


def roff(text: str) -> str:
    """``text`` as literal roff lines (no fill), escaped."""
    lines = []
    for raw in text.rstrip().splitlines():
        line = raw.replace("\\", "\\e").replace("-", "\\-")
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main() -> int:
    from edge.cli.main import build_parser

    os.environ["COLUMNS"] = "80"  # stable wrapping, whatever the terminal
    out = ["[COMMANDS]"]
    for name, sub in subparsers(build_parser()).items():
        out += [".SS " + name, ".nf", roff(sub.format_help()), ".fi"]
        for action_name, action_parser in subparsers(sub).items():
            out += [f".SS {name} {action_name}", ".nf", roff(action_parser.format_help()),
                    ".fi"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
