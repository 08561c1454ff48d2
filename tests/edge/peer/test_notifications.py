"""The webhook outbox: signed delivery, retry with backoff, give up after max_attempts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from edge.peer.notifications import WebhookSender, enqueue, outbox_counts, sign
from edge.storage.database import connect, migrate
from edge.storage.group_commit import GroupCommitter
from ledger_client.testing import FakeClock


class FakeReceiver:
    def __init__(self, answers: list[int | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[bytes, dict[str, str]]] = []

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str],
                       timeout: float) -> int:
        self.calls.append((body, dict(headers)))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[Path, GroupCommitter]]:
    path = tmp_path / "edge.db"
    conn = connect(path)
    migrate(conn)
    conn.close()
    committer = GroupCommitter(path)
    committer.start()
    yield path, committer
    committer.close()


def sender(db: tuple[Path, GroupCommitter], receiver: FakeReceiver, clock: FakeClock,
           secret: Path, attempts: int = 3) -> WebhookSender:
    secret.write_bytes(b"k3y\n")
    return WebhookSender(db[0], db[1], url="http://hook.test/", secret_file=secret,
                         timeout_s=1, max_attempts=attempts, post=receiver, clock=clock,
                         sleep=clock.sleep, jitter=lambda: 1.0)


async def test_delivery_is_signed_and_retried(db: tuple[Path, GroupCommitter],
                                              tmp_path: Path) -> None:
    clock = FakeClock()
    receiver = FakeReceiver([OSError(), 500, 204])
    hook = sender(db, receiver, clock, tmp_path / "secret")
    await db[1].run(lambda conn: enqueue(conn, {"purpose": "TREAT"}, int(clock() * 1000)))
    reader = connect(db[0], readonly=True)
    try:
        assert await hook.deliver_due(reader) == 0  # OSError: retry in 1 s
        assert await hook.deliver_due(reader) == 0  # not due yet
        clock.advance(1.0)
        assert await hook.deliver_due(reader) == 0  # 500: retry in 2 s
        clock.advance(1.9)
        assert await hook.deliver_due(reader) == 0
        clock.advance(0.2)
        assert await hook.deliver_due(reader) == 1
        assert outbox_counts(reader).sent == 1
    finally:
        reader.close()
    bodies = {body for body, _ in receiver.calls}
    assert len(receiver.calls) == 3 and len(bodies) == 1
    body, headers = receiver.calls[-1]
    assert json.loads(body) == {"purpose": "TREAT"}
    assert headers["X-Hie-Edge-Signature"] == sign(b"k3y", body)
    assert headers["X-Hie-Edge-Delivery"] == "1"


async def test_gives_up_after_max_attempts(db: tuple[Path, GroupCommitter],
                                           tmp_path: Path) -> None:
    clock = FakeClock()
    hook = sender(db, FakeReceiver([503, 503]), clock, tmp_path / "secret", attempts=2)
    await db[1].run(lambda conn: enqueue(conn, {"x": 1}, int(clock() * 1000)))
    reader = connect(db[0], readonly=True)
    try:
        await hook.deliver_due(reader)
        clock.advance(10)
        await hook.deliver_due(reader)
        assert outbox_counts(reader).failed == 1
        assert hook.last_error == "http-503"
    finally:
        reader.close()
