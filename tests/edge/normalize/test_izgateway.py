"""IZ Gateway v2tofhir golden assertions (izgateway-v2tofhir/messages.txt).

Each message there is followed by ``@FHIRPath = value`` assertions on the converted Bundle.
A tiny evaluator handles the simple forms they mostly use (``Res.path = 'x'``,
``.count() = n``, ``.empty()``, ``.exists($this = 'x')``, ``.exists($this.a = 'x')``,
``.toString() = 'x'``); other forms are skipped. Also skipped, by design: assertions on
``system`` (our Identifier.system comes from the facility's map, not the raw namespace),
and on query/response resources we do not produce (OperationOutcome, Parameters). Messages of
a structure we do not map (RSP, QBP) are re-sent as ADT^A28 with their MSH and patient
segments, which is what their Patient/MessageHeader/Bundle assertions are about.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edge.er7 import parse
from edge.normalize import NormalizeContext, normalize
from edge.normalize.messages import REGISTRY
from edge.normalize.structure import message_structure

_SKIP = re.compile(
    r"system|OperationOutcome|Parameters|%context|meta\.tag|definition|"
    r"\.event|response|extension\(|ofType|where\("
)
_ASSERT = re.compile(
    r"^@(?P<res>[A-Z][A-Za-z]+)(?P<path>(?:\.[a-zA-Z]+(?:\[\d+\])?)*)"
    r"(?:"
    r"\s*=\s*'(?P<eq>[^']*)'"
    r"|\.toString\(\)\s*=\s*'(?P<str>[^']*)'"
    r"|\.count\(\)\s*=\s*(?P<count>\d+)"
    r"|\.(?P<empty>empty)\(\)"
    r"|\.exists\(\$this(?P<sub>\.[a-zA-Z]+)?\s*=\s*'(?P<ex>[^']*)'\)"
    r")\s*$"
)


def _messages(path: Path) -> list[tuple[str, list[str]]]:
    """(ER7 message, its assertion lines) in file order."""
    out: list[tuple[list[str], list[str]]] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        while line.rstrip().endswith("\\") and i < len(lines):
            line = line.rstrip()[:-1] + lines[i].strip()
            i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "//", "/*")):
            continue
        if line[:1].isspace() and stripped.startswith("@"):
            if out:
                out[-1][1].append(stripped.split("//")[0].strip())
            continue
        if re.match(r"^[A-Z][A-Z0-9]{2}\|", line):
            if line.startswith("MSH|"):
                out.append(([line], []))
            elif out:
                out[-1][0].append(line)
    return [("\r".join(segments) + "\r", asserts) for segments, asserts in out]


def _step(nodes: list[Any], name: str) -> list[Any]:
    match = re.fullmatch(r"([a-zA-Z]+)(?:\[(\d+)\])?", name)
    assert match is not None
    key, index = match.group(1), match.group(2)
    found: list[Any] = []
    for node in nodes:
        if isinstance(node, dict) and key in node:
            value = node[key]
            found.extend(value if isinstance(value, list) else [value])
    if index is not None:
        return [found[int(index)]] if int(index) < len(found) else []
    return found


def _evaluate(bundle: dict[str, Any], text: str) -> bool | None:
    """True/False for an assertion we can evaluate, None for one we skip."""
    if _SKIP.search(text):
        return None
    match = _ASSERT.match(text)
    if match is None:
        return None
    res = match.group("res")
    nodes: list[Any] = (
        [bundle]
        if res == "Bundle"
        else [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == res]
    )
    for step in filter(None, match.group("path").split(".")):
        nodes = _step(nodes, step)
    if match.group("eq") is not None:
        return nodes == [match.group("eq")]
    if match.group("str") is not None:
        return [str(n) for n in nodes] == [match.group("str")]
    if match.group("count") is not None:
        return len(nodes) == int(match.group("count"))
    if match.group("empty"):
        return not nodes
    sub = match.group("sub")
    if sub:
        nodes = _step(nodes, sub[1:])
    return match.group("ex") in nodes


def test_izgateway_assertions(corpora_dir: Path) -> None:
    ctx = NormalizeContext(facility_id="iz", timezone="America/New_York", validation="full")
    evaluated = 0
    failures: list[str] = []
    for raw, assertions in _messages(corpora_dir / "izgateway-v2tofhir" / "messages.txt"):
        if not assertions:
            continue
        header = parse(raw).header
        if message_structure(header, REGISTRY) not in REGISTRY:
            segments = raw.split("\r")
            msh = segments[0].split("|")
            msh[8] = "ADT^A28^ADT_A05"
            keep = [s for s in segments[1:] if s[:3] in ("PID", "PD1", "NK1", "PV1")]
            raw_sent = "\r".join(["|".join(msh), *keep]) + "\r"
        else:
            raw_sent = raw
        bundle = normalize(raw_sent.encode(), context=ctx).bundle()
        for assertion in assertions:
            outcome = _evaluate(bundle, assertion)
            if outcome is None:
                continue
            evaluated += 1
            if not outcome:
                failures.append(f"{header.control_id}: {assertion}")
    assert evaluated >= 15
    assert not failures, "\n".join(failures)
