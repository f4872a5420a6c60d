"""Rings the delivery workers of this process when a transaction that queued deliveries commits.

A worker polls the queue (other processes fill it too), but a new thread should not wait for the next
poll to start its fan-out. `record_activity` marks its session; after that session commits, every worker
waiting on the same database is woken. Nothing rings for a rolled-back transaction.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

_QUEUED = "deliveries_queued"
_waiting: weakref.WeakKeyDictionary[Engine, list[Callable[[], None]]] = weakref.WeakKeyDictionary()


def listen(engine: AsyncEngine, wake: Callable[[], None]) -> None:
    """Call `wake` after each commit on `engine` that queued deliveries."""
    _waiting.setdefault(engine.sync_engine, []).append(wake)


def mark(session: AsyncSession) -> None:
    """This transaction queues deliveries: ring once it commits."""
    session.info[_QUEUED] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if not session.info.pop(_QUEUED, False):
        return
    bind = session.bind
    engine = bind.engine if bind is not None else None
    for wake in _waiting.get(engine, ()) if engine is not None else ():
        wake()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_QUEUED, None)
