"""Housekeeping of the federation queues: settled rows are history, and history must not grow without end.

A thread in a category followed on 2,000 instances leaves 2,000 delivery rows; a busy inbox, a row per
activity received. Kept forever, they slow every claim that filters the queues and fill the disk. So:
- deliveries delivered more than `DELIVERED_KEPT` ago are deleted; failed or gone ones (given up on after
  about three days of retries) after `GIVEN_UP_KEPT`, long enough for an operator to look into them;
- received activities settled (done or refused) more than `RECEIVED_KEPT` ago are deleted: peers stop
  retrying within days, and a copy arriving later is still recognized by what it made (posts, votes and
  follows keep the ids they came with).
Rows still queued, being sent or being processed are never touched, however old. The outgoing activities
themselves stay: peers fetch them by their ids. Deleted in slices, a transaction each, so that no lock is
held for long on a busy queue.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from forum.models import Delivery, DeliveryState, ReceivedActivity, ReceivedState
from forum.models.base import utcnow

DELIVERED_KEPT = timedelta(days=7)
GIVEN_UP_KEPT = timedelta(days=30)
RECEIVED_KEPT = timedelta(days=30)
SLICE = 5_000


async def prune_federation_queues(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime | None = None, slice_rows: int = SLICE
) -> dict[str, int]:
    """Delete the settled rows past their keeping time; how many of each kind went."""
    moment = now or utcnow()
    return {
        "delivered": await _prune(
            sessions, Delivery, Delivery.id,
            (Delivery.state == DeliveryState.DELIVERED) & (Delivery.delivered_at < moment - DELIVERED_KEPT),
            slice_rows,
        ),
        "given up": await _prune(
            sessions, Delivery, Delivery.id,
            Delivery.state.in_([DeliveryState.FAILED, DeliveryState.GONE])
            & (Delivery.created_at < moment - GIVEN_UP_KEPT),
            slice_rows,
        ),
        "received": await _prune(
            sessions, ReceivedActivity, ReceivedActivity.id,
            ReceivedActivity.state.in_([ReceivedState.DONE, ReceivedState.REFUSED])
            & (ReceivedActivity.processed_at < moment - RECEIVED_KEPT),
            slice_rows,
        ),
    }  # fmt: skip


async def _prune(
    sessions: async_sessionmaker[AsyncSession],
    model: type[Delivery] | type[ReceivedActivity],
    key: InstrumentedAttribute[int],
    condition: ColumnElement[bool],
    slice_rows: int,
) -> int:
    deleted = 0
    while True:
        async with sessions() as session, session.begin():
            ids = list(await session.scalars(select(key).where(condition).limit(slice_rows)))
            if ids:
                await session.execute(delete(model).where(key.in_(ids)))
        deleted += len(ids)
        if len(ids) < slice_rows:
            return deleted
