"""What the forum asks of federation (`forum.ports.RemoteResolver`): remote actors and posts by address."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.handlers.base import HandlerFailed, HandlerRefused, Received
from activitypub.handlers.content import store_post
from activitypub.protocol.client import FetchError
from activitypub.protocol.jsonld import DocumentError
from activitypub.resolver import ResolveError
from activitypub.runtime import Federation
from forum.models import Actor, Post

log = logging.getLogger(__name__)


class FederatedLookup:
    def __init__(self, federation: Federation) -> None:
        self._federation = federation

    async def resolve_actor(self, session: AsyncSession, handle_or_url: str) -> Actor | None:
        return await self._federation.resolver.resolve_actor(session, handle_or_url)

    async def resolve_post(self, session: AsyncSession, url: str) -> Post | None:
        received = Received(session, self._federation, {"id": url, "type": "Create"})
        found = await received.post_by_id(url)
        if found is not None:
            return found[0]
        try:
            document = await self._federation.resolver.fetch(url)
            author = received.single(document.get("attributedTo")) or ""
            received = Received(session, self._federation, {"id": url, "type": "Create", "actor": author})
            await store_post(received, document)
        except (ResolveError, FetchError, DocumentError, HandlerFailed, HandlerRefused) as error:
            log.info("could not resolve %s: %s", url, error)
            return None
        found = await received.post_by_id(str(document.get("id")))
        return found[0] if found else None
