"""``hie-edge send FILE --to HOST:PORT``: send the messages in FILE over MLLP, one at a time,
and print each answer's MSA-1 code and MSA-2. Exit 0 when every answer is AA/CA, 1 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from adapters.mllp.client import MLLPClient, parse_ack
from adapters.mllp.errors import MLLPError
from adapters.tls import client_context
from edge.cli import exits
from edge.cli.exits import CLIError
from edge.config.model import Bind
from edge.er7 import batch as er7_batch
from edge.er7.errors import ER7Error


def run_send(args: argparse.Namespace) -> int:
    try:
        target = Bind.parse(args.to)
    except ValueError as exc:
        raise CLIError(exits.USAGE, f"hie-edge send: --to: {exc}") from None
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CLIError(exits.NOINPUT, f"hie-edge send: {args.file}: {exc.strerror}") from None
    try:
        messages = er7_batch.split(data).messages
    except ER7Error as exc:
        raise CLIError(exits.DATAERR, f"hie-edge send: {args.file}: {exc}") from None
    if not messages:
        raise CLIError(exits.DATAERR, f"hie-edge send: {args.file}: no HL7v2 message in it")
    context = None
    if args.tls or args.ca or args.cert:
        context = client_context(ca=args.ca, cert=args.cert, key=args.key)
    try:
        answers = asyncio.run(_send_all(target, list(messages), context, args.timeout))
    except (MLLPError, OSError) as exc:
        raise CLIError(exits.UNAVAILABLE, f"hie-edge send: {target}: {exc}") from None
    ok = True
    results = []
    for answer in answers:
        summary = parse_ack(answer)
        ok = ok and summary.code in ("AA", "CA")
        results.append({"code": summary.code, "control_id": summary.control_id,
                        "text": summary.text})
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        for result in results:
            print(f"{result['code']} {result['control_id']}"
                  + (f" {result['text']}" if result["text"] else ""))
    return exits.OK if ok else exits.FAILURE


async def _send_all(target: Bind, messages: list[bytes], context: object,
                    timeout: float) -> list[bytes]:
    import ssl

    assert context is None or isinstance(context, ssl.SSLContext)
    async with MLLPClient.connect(target.host, target.port, ssl=context,
                                  timeout=timeout) as client:
        return [await client.send(message) for message in messages]
