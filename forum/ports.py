"""What the forum needs from outside, as Protocols; `activitypub` implements them, `forum.app` injects them."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from forum.models import Actor, Post


class RemoteResolver(Protocol):
    """Finds a remote actor by handle (`name@host`) or URL, fetching and storing it when unknown."""

    async def resolve_actor(self, session: AsyncSession, handle_or_url: str) -> Actor | None: ...

    async def resolve_post(self, session: AsyncSession, url: str) -> Post | None:
        """A remote thread or reply by its address, fetched (with its thread) and stored when unknown."""
        ...
