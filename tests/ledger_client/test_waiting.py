from __future__ import annotations

import asyncio

from ledger_client.waiting import sleep_or_wake


async def test_a_wake_up_ends_the_wait_and_is_consumed() -> None:
    wake = asyncio.Event()
    slept: list[float] = []
    never = asyncio.get_running_loop().create_future()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await never  # only a wake-up can end this wait

    waiting = asyncio.create_task(sleep_or_wake(wake, 30.0, sleep))
    await asyncio.sleep(0)
    wake.set()
    await asyncio.wait_for(waiting, 5.0)
    assert slept == [30.0] and not wake.is_set()
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_a_wake_up_already_set_returns_at_once() -> None:
    wake = asyncio.Event()
    wake.set()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    await sleep_or_wake(wake, 30.0, sleep)
    assert slept == [] and not wake.is_set()


async def test_without_a_wake_up_the_delay_ends_it() -> None:
    wake = asyncio.Event()
    await asyncio.wait_for(sleep_or_wake(wake, 0.0), 5.0)
    assert not wake.is_set()
