"""wait_or_stop: a loop's pause between rounds, cut short by stop."""

import asyncio

from eventlog.stopping import wait_or_stop


async def test_returns_false_after_the_wait_when_not_stopped():
    assert await wait_or_stop(asyncio.Event(), 0.01) is False


async def test_returns_true_at_once_when_stop_is_set_during_the_wait():
    stop = asyncio.Event()
    waiting = asyncio.create_task(wait_or_stop(stop, 3600))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(waiting, 5) is True
