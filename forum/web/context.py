"""What every route needs, built once by `forum.app` and kept on `app.state.forum`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from forum.cache import CachedPage, InvalidationBus, TaggedCache
from forum.config import Settings
from forum.events import EventBus
from forum.i18n import Catalogs
from forum.permissions import Viewer
from forum.ports import RemoteResolver
from forum.ratelimit import RateLimiter
from forum.services.reading import ThreadPage
from forum.services.site import SiteInfo
from forum.web.templating import Templates


@dataclass
class ForumContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus
    templates: Templates
    catalogs: Catalogs
    resolver: RemoteResolver
    limiter: RateLimiter
    pages: TaggedCache[CachedPage]
    # Each member's viewer with the end of the session it was looked up for.
    viewers: TaggedCache[tuple[Viewer, datetime]]
    site_cache: TaggedCache[SiteInfo]
    threads: TaggedCache[ThreadPage]
    invalidations: InvalidationBus
    extra: dict[str, Any] = field(default_factory=dict)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction: commits on success, then drops what it made stale from every cache."""
        async with self.sessions() as session:
            async with session.begin():
                yield session
                await session.flush()
                stale = await self.invalidations.flush_pending(session)
            self.invalidations.drop(stale)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def read_rows(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads that want rows, not entities: no session, no identity map (on SQLite a
        session's round of a one-row read costs about twice a bare connection's)."""
        async with self.engine.connect() as connection:
            yield connection


def forum_context(connection: HTTPConnection) -> ForumContext:
    context: ForumContext = connection.app.state.forum
    return context
