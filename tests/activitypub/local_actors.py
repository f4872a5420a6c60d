"""A local member's actor with a fresh key pair, written to the real database: what deliveries are signed with."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from forum.keys import generate_key_pair
from forum.models import Actor, ActorKind


async def local_actor(session: AsyncSession, base_url: str, name: str) -> Actor:
    private, public = generate_key_pair()
    actor = Actor(ap_id=f"{base_url}/u/{name}", local=True, kind=ActorKind.PERSON, username=name, username_key=name,
                  key_id=f"{base_url}/u/{name}#main-key", public_key_pem=public, private_key_pem=private)  # fmt: skip
    session.add(actor)
    await session.flush()
    return actor
