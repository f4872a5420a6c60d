"""`activitypub.queue_pruning` on a real database: settled rows past their keeping time go, in slices; rows
still waiting, being sent or being processed stay whatever their age; outgoing activities stay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activitypub.queue_pruning import prune_federation_queues
from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.models import (
    Delivery,
    DeliveryState,
    OutgoingActivity,
    ReceivedActivity,
    ReceivedState,
)
from forum.models.base import utcnow
from tests.activitypub.local_actors import local_actor

NOW = utcnow()
DAY = timedelta(days=1)


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    yield sessionmaker(engine)
    await engine.dispose()


async def _queues(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Deliveries and received activities of every state, some old and some recent, named by their URLs."""
    async with sessions() as session, session.begin():
        ana = await local_actor(session, settings.base_url, "ana")
        activity = OutgoingActivity(ap_id=f"{settings.base_url}/activities/1", actor_id=ana.id, type="Create",
                                    document={"id": f"{settings.base_url}/activities/1"})  # fmt: skip
        session.add(activity)
        await session.flush()
        deliveries = {
            "delivered-8-days-ago": (DeliveryState.DELIVERED, 8),
            "delivered-6-days-ago": (DeliveryState.DELIVERED, 6),
            "failed-31-days-ago": (DeliveryState.FAILED, 31),
            "gone-31-days-ago": (DeliveryState.GONE, 31),
            "failed-10-days-ago": (DeliveryState.FAILED, 10),
            "queued-60-days-ago": (DeliveryState.QUEUED, 60),
            "sending-60-days-ago": (DeliveryState.SENDING, 60),
        }
        for name, (state, age) in deliveries.items():
            at = NOW - age * DAY
            session.add(Delivery(activity_id=activity.id, inbox_url=f"https://{name}.example/inbox",
                                 domain=f"{name}.example", state=state, created_at=at,
                                 delivered_at=at if state == DeliveryState.DELIVERED else None))  # fmt: skip
        received = {
            "done-31-days-ago": (ReceivedState.DONE, 31),
            "refused-31-days-ago": (ReceivedState.REFUSED, 31),
            "done-20-days-ago": (ReceivedState.DONE, 20),
            "queued-60-days-ago": (ReceivedState.QUEUED, 60),
            "failed-60-days-ago": (ReceivedState.FAILED, 60),
        }
        for name, (received_state, age) in received.items():
            at = NOW - age * DAY
            settled = received_state in (ReceivedState.DONE, ReceivedState.REFUSED)
            row = ReceivedActivity(ap_id=f"https://{name}.example/a", type="Create", actor_ap_id=f"https://{name}.example/u",
                                   signer_key_id="k", document={}, state=received_state, received_at=at)  # fmt: skip
            row.processed_at = at if settled else None
            session.add(row)


async def _left(sessions: async_sessionmaker[AsyncSession]) -> tuple[set[str], set[str]]:
    async with sessions() as session:
        deliveries = {domain.removesuffix(".example") for domain in await session.scalars(select(Delivery.domain))}
        received = {
            ap_id.removeprefix("https://").removesuffix(".example/a")
            for ap_id in await session.scalars(select(ReceivedActivity.ap_id))
        }
    return deliveries, received


async def test_settled_rows_past_their_time_go_and_the_rest_stays(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await _queues(sessions, settings)
    # Slices of two rows: the three kinds each take more than one slice or exactly one.
    pruned = await prune_federation_queues(sessions, now=NOW, slice_rows=2)
    assert pruned == {"delivered": 1, "given up": 2, "received": 2}
    deliveries, received = await _left(sessions)
    assert deliveries == {"delivered-6-days-ago", "failed-10-days-ago", "queued-60-days-ago", "sending-60-days-ago"}
    assert received == {"done-20-days-ago", "queued-60-days-ago", "failed-60-days-ago"}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutgoingActivity)) == 1
    # Nothing more to do: a second run deletes nothing.
    assert await prune_federation_queues(sessions, now=NOW) == {"delivered": 0, "given up": 0, "received": 0}


async def test_many_rows_are_deleted_slice_by_slice(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        session.add_all([
            ReceivedActivity(ap_id=f"https://a.example/{n}", type="Like", actor_ap_id="https://a.example/u",
                             signer_key_id="k", document={}, state=ReceivedState.DONE,
                             received_at=NOW - 40 * DAY, processed_at=NOW - 40 * DAY)
            for n in range(25)
        ])  # fmt: skip
    assert (await prune_federation_queues(sessions, now=NOW, slice_rows=4))["received"] == 25
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ReceivedActivity)) == 0
