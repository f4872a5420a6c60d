"""What the forum needs from outside, as Protocols; `activitypub` implements them, `forum.app` injects them."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from forum.models import Actor


class RemoteResolver(Protocol):
    """Finds a remote actor by handle (`name@host`) or URL, fetching and storing it when unknown."""

    async def resolve_actor(self, session: AsyncSession, handle_or_url: str) -> Actor | None: ...


class NoFederation:
    """The resolver used until federation is wired in: nothing remote is known."""

    async def resolve_actor(self, session: AsyncSession, handle_or_url: str) -> Actor | None:
        return None
