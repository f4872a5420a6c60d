"""The federation's collaborators, built once by the composition root and kept on the forum context.

Nothing here does I/O when built: the HTTP clients connect on first use and are closed by `aclose`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from activitypub.intake import InboxPressure, ReceivedWriter
from activitypub.outbox import Outbox
from activitypub.peer_notes import PeerNotes
from activitypub.protocol.client import GuardedClient
from activitypub.protocol.jsonld import Glance, Normalizer
from activitypub.protocol.poster import DeliveryPoster
from activitypub.resolver import ActivityPubResolver
from activitypub.signers import Signers
from forum import __version__
from forum.cache import InvalidationBus
from forum.config import Settings
from forum.events import EventBus


@dataclass
class Federation:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus
    client: GuardedClient
    normalizer: Normalizer
    resolver: ActivityPubResolver
    outbox: Outbox
    invalidations: InvalidationBus
    # Who signed a request (inbox POSTs, authorized-fetch GETs), with the keys that verified lately.
    signers: Signers
    # What the inboxes learn of each peer (its signature form, that it is up), written after the answer.
    peer_notes: PeerNotes
    delivery_poster: DeliveryPoster | None = None
    # Group commit of what the inboxes store (see activitypub.intake).
    received: ReceivedWriter = field(default_factory=ReceivedWriter)
    # Inbox requests being answered now, which the in-process inbox worker lets go first.
    pressure: InboxPressure = field(default_factory=InboxPressure)

    def normalize(self, document: dict[str, Any]) -> dict[str, Any]:
        return self.resolver.normalize(document)

    def glance(self, document: dict[str, Any]) -> Glance | None:
        """What an inbox checks of an activity, when its plain terms say it for certain (see `Normalizer.glance`)."""
        return self.resolver.glance(document)

    async def aclose(self) -> None:
        await self.received.drain()
        await self.peer_notes.settled()
        await self.client.aclose()
        if self.delivery_poster is not None:
            await self.delivery_poster.aclose()


def user_agent(settings: Settings) -> str:
    return f"Jardin/{__version__} (+{settings.base_url})"


def build_federation(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], bus: EventBus, invalidations: InvalidationBus
) -> Federation:
    agent = user_agent(settings)
    client = GuardedClient(allow_private=settings.federation_allow_private, user_agent=agent)
    normalizer = Normalizer()
    outbox = Outbox(settings.base_url)
    outbox.subscribe(bus)
    resolver = ActivityPubResolver(settings, sessions, client, normalizer)
    return Federation(
        settings=settings,
        sessions=sessions,
        bus=bus,
        client=client,
        normalizer=normalizer,
        resolver=resolver,
        outbox=outbox,
        invalidations=invalidations,
        signers=Signers(sessions, resolver),
        peer_notes=PeerNotes(sessions, resolver),
        delivery_poster=DeliveryPoster(allow_private=settings.federation_allow_private, user_agent=agent),
    )


def federation_of(connection: HTTPConnection) -> Federation:
    federation: Federation = connection.app.state.forum.extra["federation"]
    return federation
