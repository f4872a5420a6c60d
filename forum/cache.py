"""Caches that stay right across processes: rendered pages for visitors, and looked-up sessions.

A change publishes the keys it makes stale (`t:42`, `c:3`, `home`, `site`, `s:<session>`) as rows of
`cache_invalidations`, in the same transaction as the change. Any write to `follows` marks `follows`
stale by itself, whichever code made it (unit of work, bulk insert or delete): follows change in many
places (members, the inbox, the concierge) and publish no common event. The process that made the change
drops them right after its commit; every other process polls the rows of the last seconds and
drops them within a poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from forum.models import CacheInvalidation, Follow
from forum.models.base import utcnow

log = logging.getLogger(__name__)

V = TypeVar("V")
PENDING_KEY = "cache_invalidations"
# Rows are re-read for this long: transactions may commit out of id order.
OVERLAP = timedelta(seconds=30)
RETENTION = timedelta(minutes=10)
# Stale whenever a row of `follows` is written: what counts followers (the collections peers read) uses it.
FOLLOWS = "follows"


@dataclass(frozen=True)
class CachedPage:
    body: bytes
    etag: str
    media_type: str


class TaggedCache(Generic[V]):
    """An LRU of values, each tagged with the invalidation keys it depends on.

    Bounded by a number of entries and, when `size` is given, by the bytes it reports.
    """

    def __init__(
        self, max_entries: int, *, max_bytes: int | None = None, size: Callable[[V], int] | None = None
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size = size
        self.bytes = 0
        self._entries: OrderedDict[Any, tuple[V, tuple[str, ...]]] = OrderedDict()
        self._by_tag: dict[str, set[Any]] = {}

    def get(self, key: Any) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Any, value: V, tags: Iterable[str]) -> None:
        if self.max_entries <= 0:
            return
        tags = tuple(tags)
        self._forget(key)
        self._entries[key] = (value, tags)
        if self._size is not None:
            self.bytes += self._size(value)
        for tag in tags:
            self._by_tag.setdefault(tag, set()).add(key)
        while len(self._entries) > self.max_entries or (
            self.max_bytes is not None and self.bytes > self.max_bytes and len(self._entries) > 1
        ):
            self._forget(next(iter(self._entries)))

    def invalidate(self, tag: str) -> None:
        for key in self._by_tag.pop(tag, set()):
            self._forget(key)

    def clear(self) -> None:
        self._entries.clear()
        self._by_tag.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, key: Any) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        if self._size is not None:
            self.bytes -= self._size(entry[0])
        for tag in entry[1]:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]


def mark_stale(session: AsyncSession | Session, *keys: str) -> None:
    """Record keys made stale by this transaction; `InvalidationBus.flush_pending` writes them."""
    session.info.setdefault(PENDING_KEY, set()).update(keys)


@event.listens_for(Session, "before_flush")
def _follows_flushed(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    if any(isinstance(row, Follow) for rows in (session.new, session.dirty, session.deleted) for row in rows):
        mark_stale(session, FOLLOWS)


@event.listens_for(Session, "do_orm_execute")
def _follows_written(state: ORMExecuteState) -> None:
    # Inserted or deleted in bulk. A follow's state changes through the unit of work (above); the one bulk
    # UPDATE of `follows` moves a watcher's read position on every thread page they open, and counts nothing.
    if (state.is_insert or state.is_delete) and any(mapper.class_ is Follow for mapper in state.all_mappers):
        mark_stale(state.session, FOLLOWS)


class InvalidationBus:
    """Carries stale keys from the process that wrote to every process's caches."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], caches: list[TaggedCache[Any]]) -> None:
        self._sessions = sessions
        self._caches = caches
        self._seen: dict[int, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def flush_pending(self, session: AsyncSession) -> set[str]:
        """Write this transaction's stale keys; call before commit. Returns them, to drop after commit."""
        keys: set[str] = session.info.pop(PENDING_KEY, set())
        if keys:
            now = utcnow()
            await session.execute(insert(CacheInvalidation), [{"key": k, "created_at": now} for k in sorted(keys)])
        return keys

    def drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            for cache in self._caches:
                cache.invalidate(key)

    async def poll_once(self) -> int:
        """Drop what other processes marked stale since the last poll; returns how many keys."""
        since = utcnow() - OVERLAP
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(CacheInvalidation.id, CacheInvalidation.key, CacheInvalidation.created_at).where(
                        CacheInvalidation.created_at >= since
                    )
                )
            ).all()
        fresh = [(row_id, key, created_at) for row_id, key, created_at in rows if row_id not in self._seen]
        for row_id, key, created_at in fresh:
            self._seen[row_id] = created_at
            self.drop([key])
        self._seen = {row_id: at for row_id, at in self._seen.items() if at >= since}
        return len(fresh)

    async def prune(self) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(CacheInvalidation).where(CacheInvalidation.created_at < utcnow() - RETENTION))

    async def run(self, interval: float = 0.5) -> None:
        """Poll until cancelled (a task of the server's lifespan)."""
        rounds = 0
        while True:
            try:
                await self.poll_once()
                rounds += 1
                if rounds % 1200 == 0:
                    await self.prune()
            except Exception:  # the database may blink; the next round retries
                log.exception("cache invalidation poll failed")
            await asyncio.sleep(interval)
