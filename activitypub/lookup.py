"""What the forum asks of federation (`forum.ports.RemoteResolver`): remote actors and posts by address."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.actors import as_strings
from activitypub.backfill import COLLECTION_TYPES, first_post_of, request_backfill
from activitypub.handlers.base import HandlerFailed, HandlerRefused, Received
from activitypub.handlers.content import store_post
from activitypub.processing import MAX_FETCHES
from activitypub.protocol.client import FetchError
from activitypub.protocol.deferral import TooManyFetches, with_fetches_deferred
from activitypub.protocol.jsonld import DocumentError
from activitypub.resolver import ResolveError
from activitypub.runtime import Federation
from forum.models import Actor, Post, Thread

log = logging.getLogger(__name__)


class FederatedLookup:
    def __init__(self, federation: Federation) -> None:
        self._federation = federation

    async def resolve_actor(self, session: AsyncSession, handle_or_url: str) -> Actor | None:
        return await self._federation.resolver.resolve_actor(session, handle_or_url)

    async def resolve_post(self, session: AsyncSession, url: str) -> Post | None:
        """The post at `url`, fetched and stored in a transaction of its own (with its thread, and the thread's
        category when only its `audience` names it), so it is there for whoever asks next. Its thread's
        backfill is requested: at once for a thread met for the first time, else if not walked lately."""
        federation = self._federation
        found = await Received(session, federation, {"id": url, "type": "Create"}).post_by_id(url)
        if found is not None:
            await self._request_backfill(found[1])
            return found[0]
        try:
            document = await federation.resolver.fetch(url)
            if document.get("type") in COLLECTION_TYPES:
                # A thread named by its context collection (NodeBB's `/topic/ID`): its first post.
                document = await first_post_of(federation, document) or document
            object_id = str(document.get("id"))
            # As in the inbox worker: what storing it needs fetched (its author, the posts it answers) is fetched
            # with no transaction open, and the storing done again; SQLite's write lock never waits on a peer.
            await with_fetches_deferred(lambda: self._store(document, object_id), max_fetches=MAX_FETCHES)
        except (ResolveError, FetchError, DocumentError, HandlerFailed, HandlerRefused, TooManyFetches) as error:
            log.info("could not resolve %s: %s", url, error)
            return None
        found = await Received(session, federation, {"id": url, "type": "Create"}).post_by_id(object_id)
        return found[0] if found else None

    async def _store(self, document: dict[str, Any], object_id: str) -> None:
        federation = self._federation
        author = Received.single(document.get("attributedTo")) or ""
        async with federation.sessions() as own:
            async with own.begin():
                received = Received(own, federation, {"id": object_id, "type": "Create", "actor": author})
                await self._audience(received, document)
                await store_post(received, document)
                stored = await received.post_by_id(object_id)
                if stored is not None:
                    await request_backfill(own, stored[1].id)
                await own.flush()
                stale = await federation.invalidations.flush_pending(own)
            federation.invalidations.drop(stale)

    async def _audience(self, received: Received, document: dict[str, Any]) -> None:
        """A Group named as the post's `audience` and new here becomes a remote category, as when its handle is
        looked up: a thread found by its address lands in its category (the inbox takes none it does not know)."""
        for group_id in as_strings(document.get("audience"))[:2]:
            if await received.session.scalar(select(Actor.id).where(Actor.ap_id == group_id)) is None:
                with contextlib.suppress(ResolveError, FetchError, DocumentError):
                    await self._federation.resolver.actor(received.session, group_id)

    async def _request_backfill(self, thread: Thread) -> None:
        if thread.local:
            return
        async with self._federation.sessions() as own, own.begin():
            await request_backfill(own, thread.id)
