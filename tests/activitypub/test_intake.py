"""The inbox's group commit, against a real database, and its pressure gauge: the in-process worker lets
peers' requests go first, and is never stopped by them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncpg.exceptions import IntegrityConstraintViolationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activitypub.intake import InboxPressure, ReceivedWriter
from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.models import ReceivedActivity


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    yield sessionmaker(engine)
    await engine.dispose()


def _row(n: int, **changes: Any) -> dict[str, Any]:
    actor, ap_id = f"https://a.example/u/{n}", f"https://a.example/activities/{n}"
    return {"ap_id": ap_id, "type": "Create", "actor_ap_id": actor, "signer_key_id": f"{actor}#main-key",
            "document": {"id": ap_id}, **changes}  # fmt: skip


async def _kept(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return sorted(await session.scalars(select(ReceivedActivity.ap_id)))


async def test_concurrent_rows_are_committed_together_and_a_repeat_stays_one_row(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    writer = ReceivedWriter()
    await asyncio.gather(*(writer.store(sessions, _row(n)) for n in (1, 2, 3, 1)))
    assert await _kept(sessions) == [f"https://a.example/activities/{n}" for n in (1, 2, 3)]


async def test_a_row_the_database_refuses_fails_its_own_request_only(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    writer = ReceivedWriter()
    stored = await asyncio.gather(
        writer.store(sessions, _row(1)), writer.store(sessions, _row(2, type=None)), writer.store(sessions, _row(3)),
        return_exceptions=True,
    )  # fmt: skip
    assert stored[0] is None and stored[2] is None
    # The database driver's own error: the batch is written below SQLAlchemy.
    assert isinstance(stored[1], sqlite3.IntegrityError | IntegrityConstraintViolationError), stored[1]
    assert "received_activities.type" in str(stored[1]) or 'column "type"' in str(stored[1])
    assert await _kept(sessions) == ["https://a.example/activities/1", "https://a.example/activities/3"]


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
