"""The inbox's pressure gauge: the in-process worker lets peers' requests go first, and is never stopped by them."""

from __future__ import annotations

import asyncio

from activitypub.intake import InboxPressure


async def test_the_worker_goes_on_at_once_when_no_inbox_request_is_answered() -> None:
    pressure = InboxPressure()
    await asyncio.wait_for(pressure.lull(at_most=60), timeout=1)


async def test_the_worker_waits_until_the_last_request_is_answered() -> None:
    pressure = InboxPressure()
    with pressure.answering_one():
        with pressure.answering_one():
            waiting = asyncio.create_task(pressure.lull(at_most=60))
            await asyncio.sleep(0.01)
            assert not waiting.done() and pressure.answering == 2
        await asyncio.sleep(0.01)
        assert not waiting.done() and pressure.answering == 1
    await asyncio.wait_for(waiting, timeout=1)
    assert pressure.answering == 0


async def test_a_stream_that_never_stops_does_not_stop_the_worker() -> None:
    pressure = InboxPressure()
    with pressure.answering_one():
        await asyncio.wait_for(pressure.lull(at_most=0.05), timeout=5)


async def test_a_request_that_fails_still_counts_as_answered() -> None:
    pressure = InboxPressure()
    try:
        with pressure.answering_one():
            raise ConnectionResetError
    except ConnectionResetError:
        pass
    assert pressure.answering == 0
    await asyncio.wait_for(pressure.lull(at_most=60), timeout=1)
