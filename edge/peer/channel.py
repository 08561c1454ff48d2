"""The channel between the daemon and one of its peer worker processes
(:mod:`edge.peer.workers`, :mod:`edge.peer.worker`): messages framed by a 4-byte big-endian
length, over a socketpair the daemon created for that worker alone.

The payloads are pickles. That is safe here and only here: both ends are this program, run
by the same user, and the socketpair is reachable by nobody else (it is never bound to a
name). Nothing a peer sends is ever unpickled: requests reach a worker as HTTP, and what
crosses the channel are the worker's own objects (:class:`~edge.peer.audit_batch.AuditWrite`,
settings, counters).

Messages are tuples whose first item names them:

- worker → daemon: ``("ready",)``; ``("audit", n, AuditWrite)``; ``("refused", n, events)``;
  ``("counters", {...})``;
- daemon → worker: ``("start", Settings)`` (the first message); ``("answer", n, size,
  error)`` for request ``n`` (``error`` None, ``"replayed"``, an IntegrityError or a
  StorageError's text: :func:`edge.peer.workers.commit_for_worker`);
  ``("settings", PeerSettings)`` after a reload; ``("counters?",)`` (answered by a
  ``counters`` message); ``("stop",)``.

Connections travel apart, over a second socketpair per worker (``SOCK_SEQPACKET``): each
message is one byte with one accepted socket's descriptor attached (``SCM_RIGHTS``, Linux
unix(7)): :func:`hand_connection`, :func:`take_connections`. A worker answers each with a
``("closed",)`` on the channel when that connection ends.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any, Final

from edge.peer.errors import PeerError

_HEADER: Final = struct.Struct(">I")
# An AuditWrite is a few KiB; settings are smaller. The bound only stops a corrupt length
# from allocating the machine's memory.
MAX_MESSAGE: Final = 16 * 1024 * 1024


class ChannelError(PeerError):
    """The other end sent something that is not a message of this protocol."""


async def receive(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message. Raises :class:`asyncio.IncompleteReadError` when the other end has
    closed (its process ended), :class:`ChannelError` for a malformed frame."""
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if length > MAX_MESSAGE:
        raise ChannelError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
    message = pickle.loads(await reader.readexactly(length))  # noqa: S301 - see module doc
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        raise ChannelError("message is not a named tuple of this protocol")
    return message


def send(writer: asyncio.StreamWriter, *message: Any) -> None:
    """Queue ``message`` on ``writer`` (the transport buffers it; the messages are small and
    both ends read continuously, so no drain is needed between them)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(payload)) + payload)


def handoff_pair() -> tuple[socket.socket, socket.socket]:
    """(the daemon's end, the worker's end) of a connection handoff; the daemon's does not
    block: a worker that stopped reading must not stall its accept loop."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    return ours, theirs


def hand_connection(handoff: socket.socket, connection: socket.socket) -> None:
    """Pass ``connection`` to the worker at the other end of ``handoff`` (the caller closes
    its own copy). Raises OSError: the worker is gone, or its queue is full."""
    socket.send_fds(handoff, [b"c"], [connection.fileno()])


def take_connections(handoff: socket.socket) -> list[socket.socket] | None:
    """The connections waiting on a (non-blocking) ``handoff``; None once the daemon closed
    its end."""
    taken: list[socket.socket] = []
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(handoff, 1, 1)
        except BlockingIOError:
            return taken
        except OSError:
            data, fds = b"", []
        taken += [socket.socket(fileno=fd) for fd in fds]
        if not data:
            # End of stream: the daemon closed its end (or the pair broke).
            for sock in taken:
                sock.close()
            return None
