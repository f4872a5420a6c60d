"""Composition root: builds the Starlette app from `forum.web` and wires its collaborators."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from activitypub import doorbell
from activitypub import inbox as federation_inbox
from activitypub import routes as federation_routes
from activitypub.backfill import Backfiller
from activitypub.delivery import DeliveryWorker
from activitypub.fetch_auth import AuthorizedFetch
from activitypub.lookup import FederatedLookup
from activitypub.processing import InboxWorker
from activitypub.queue_pruning import prune_federation_queues
from activitypub.runtime import Federation, build_federation
from forum import __version__
from forum.cache import CachedPage, InvalidationBus, TaggedCache, mark_stale
from forum.config import THEMES_DIR, Settings
from forum.db import create_engine, sessionmaker
from forum.errors import ForumError
from forum.events import (
    CategoryChanged,
    Event,
    EventBus,
    PostCreated,
    PostDeleted,
    PostEdited,
    SiteChanged,
    ThreadCreated,
    ThreadUnwatched,
    ThreadWatched,
    VoteChanged,
)
from forum.i18n import Catalogs
from forum.jobs import JobRunner
from forum.permissions import Viewer
from forum.ports import RemoteResolver
from forum.ratelimit import RateLimiter
from forum.services.maintenance import prune_expired_sessions
from forum.services.reading import ThreadPage
from forum.services.site import SiteInfo
from forum.web import account, admin, misc, pages, posting, votes, watching
from forum.web.api import openapi
from forum.web.api import routes as api_routes
from forum.web.api import watching as api_watching
from forum.web.context import ForumContext
from forum.web.middleware import ForumMiddleware
from forum.web.templating import Templates
from roles.concierge import api as concierge_api
from roles.concierge import panel as concierge_panel

log = logging.getLogger("forum")


def build_event_bus() -> EventBus:
    bus = EventBus()

    async def content_changed(session: AsyncSession, event: Event) -> None:
        assert isinstance(event, ThreadCreated | PostCreated | PostEdited | PostDeleted)
        mark_stale(session, f"t:{event.thread_id}", f"c:{event.category_id}", "home")

    async def votes_changed(session: AsyncSession, event: Event) -> None:
        # Scores show on the thread's pages only.
        assert isinstance(event, VoteChanged)
        mark_stale(session, f"t:{event.thread_id}")

    async def category_changed(session: AsyncSession, event: Event) -> None:
        assert isinstance(event, CategoryChanged)
        mark_stale(session, f"c:{event.category_id}", "home")

    async def site_changed(session: AsyncSession, event: Event) -> None:
        mark_stale(session, "site")

    for event_type in (ThreadCreated, PostCreated, PostEdited, PostDeleted):
        bus.subscribe(event_type, content_changed)
    bus.subscribe(VoteChanged, votes_changed)
    bus.subscribe(CategoryChanged, category_changed)
    bus.subscribe(SiteChanged, site_changed)

    async def watches_changed(session: AsyncSession, event: Event) -> None:
        assert isinstance(event, ThreadWatched | ThreadUnwatched)
        mark_stale(session, f"w:{event.follower_id}")

    bus.subscribe(ThreadWatched, watches_changed)
    bus.subscribe(ThreadUnwatched, watches_changed)
    return bus


def build_context(settings: Settings, *, resolver: RemoteResolver | None = None) -> ForumContext:
    """Everything the routes share; nothing here does I/O (the engine and HTTP clients connect lazily)."""
    engine = create_engine(settings.database_url)
    sessions = sessionmaker(engine)
    bus = build_event_bus()
    pages_cache: TaggedCache[CachedPage] = TaggedCache(
        settings.page_cache_entries, max_bytes=settings.page_cache_bytes, size=lambda page: len(page.body)
    )
    viewers: TaggedCache[tuple[Viewer, datetime]] = TaggedCache(10_000)
    site_cache: TaggedCache[SiteInfo] = TaggedCache(4)
    threads: TaggedCache[ThreadPage] = TaggedCache(settings.thread_cache_entries)
    templates = Templates(THEMES_DIR, {"version": __version__, "base_url": settings.base_url})
    watches = watching.watch_cache()
    invalidations = InvalidationBus(sessions, [pages_cache, viewers, site_cache, threads, watches])
    federation = build_federation(settings, sessions, bus, invalidations)
    extra: dict[str, object] = {"federation": federation, watching.CACHE_KEY: watches}
    if settings.federation_authorized_fetch:
        extra["authorized_fetch"] = AuthorizedFetch(federation)
    return ForumContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        bus=bus,
        templates=templates,
        catalogs=Catalogs(),
        resolver=resolver or FederatedLookup(federation),
        limiter=RateLimiter(),
        pages=pages_cache,
        viewers=viewers,
        site_cache=site_cache,
        threads=threads,
        invalidations=invalidations,
        extra=extra,
    )


async def _connections_returned(forum: ForumContext, at_most: float = 5.0) -> None:
    """Wait (a little) for connections still in use to come back before the pool is disposed: disposing
    closes only the idle ones, and one handed back afterwards is left to the garbage collector, which cannot
    close an aiosqlite connection properly."""
    pool = forum.engine.pool
    checked_out = getattr(pool, "checkedout", None)
    if checked_out is None:
        return
    deadline = asyncio.get_running_loop().time() + at_most
    while checked_out() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    if checked_out():
        log.warning("%d database connections still in use at shutdown", checked_out())


def federation_of(forum: ForumContext) -> Federation:
    federation: Federation = forum.extra["federation"]
    return federation


def create_app(
    settings: Settings,
    *,
    run_worker: bool = True,
    extra_routes: list[BaseRoute] | None = None,
    context: ForumContext | None = None,
) -> Starlette:
    """The forum as an ASGI app. `run_worker` also runs the background jobs in this process."""
    forum = context or build_context(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(forum.invalidations.run(), name="cache-invalidations")]
        if run_worker:
            tasks.append(asyncio.create_task(build_jobs(forum).run(), name="jobs"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await federation_of(forum).aclose()
            await _connections_returned(forum)
            await forum.engine.dispose()

    routes: list[BaseRoute] = [
        *(extra_routes or []),
        # Before the pages: the same addresses answer ActivityStreams JSON to peers that ask for it.
        *federation_routes.routes,
        *federation_inbox.routes,
        *pages.routes,
        *posting.routes,
        *votes.routes,
        *watching.routes,
        *account.routes,
        *admin.routes,
        *concierge_panel.routes,
        *api_routes.routes,
        *concierge_api.routes,
        *misc.routes,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                ForumMiddleware,
                max_body_bytes=settings.max_body_bytes,
                own_origin=settings.origin,
                origin_exempt=lambda path: path.startswith("/api/") or path.endswith("/inbox"),
                translate=forum.catalogs.translate,
            )
        ],
        exception_handlers={ForumError: misc.forum_error, HTTPException: misc.http_error},
    )
    app.state.forum = forum
    openapi.add_section(forum, concierge_api.SECTION)
    openapi.add_section(forum, api_watching.SECTION)
    return app


def build_jobs(forum: ForumContext) -> JobRunner:
    jobs = JobRunner()
    jobs.every(3600, "prune-sessions", lambda: prune_expired_sessions(forum.sessions))
    jobs.every(600, "prune-cache-invalidations", forum.invalidations.prune)
    jobs.every(3600, "prune-federation-queues", lambda: prune_federation_queues(forum.sessions))
    federation = federation_of(forum)
    assert federation.delivery_poster is not None
    deliveries = DeliveryWorker(forum.sessions, federation.delivery_poster)
    doorbell.listen(forum.engine, deliveries.wake)
    received = InboxWorker(federation)
    jobs.loop("deliveries", deliveries.run, deliveries.run_once)
    jobs.loop("received-activities", received.run, received.run_once)
    # Remote threads met for the first time: their conversation so far, off the inbox worker's transactions.
    backfills = Backfiller(federation)
    jobs.loop("thread-backfills", backfills.run, backfills.run_once)
    return jobs
