"""Arranging the concierge's tests: categories that approve followers, duties, and remote actors waiting
to follow (as the inbox stores a `Follow` it keeps pending), written to the real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.events import EventBus
from forum.models import (
    Actor,
    ActorKind,
    Category,
    Delivery,
    Follow,
    FollowState,
    Member,
    OutgoingActivity,
    RoleGrant,
)
from forum.services import categories as category_service

REMOTE = "remote.example"


@asynccontextmanager
async def transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def approving_category(settings: Settings, slug: str, name: str, *, private: bool = False) -> Category:
    async with transaction(settings) as session:
        return await category_service.create_category(
            session, EventBus(), settings.base_url, slug=slug, name=name, private=private, approve_followers=True
        )


async def grant(settings: Settings, username: str, duty: str, category_slug: str | None = None) -> None:
    """As `forum role grant NAME DUTY [--category SLUG]` does."""
    async with transaction(settings) as session:
        member = await session.scalar(
            select(Member).join(Actor, Actor.id == Member.actor_id).where(Actor.username_key == username.lower())
        )
        assert member is not None
        category_id = None
        if category_slug is not None:
            category_id = await session.scalar(select(Category.id).where(Category.slug == category_slug))
        session.add(RoleGrant(member_id=member.id, role=duty, category_id=category_id))


async def follow_request(settings: Settings, category_slug: str, name: str, domain: str = REMOTE) -> int:
    """A remote person's pending follow of a category, with the id of the `Follow` they sent; its row id."""
    async with transaction(settings) as session:
        actor = Actor(
            ap_id=f"https://{domain}/users/{name}",
            local=False,
            kind=ActorKind.PERSON,
            username=name,
            username_key=name.lower(),
            domain=domain,
            display_name=name.title(),
            inbox_url=f"https://{domain}/users/{name}/inbox",
            shared_inbox_url=f"https://{domain}/inbox",
        )
        session.add(actor)
        category = await session.scalar(select(Category).where(Category.slug == category_slug))
        assert category is not None
        await session.flush()
        follow = Follow(
            follower_id=actor.id,
            target_id=category.actor_id,
            state=FollowState.PENDING,
            activity_id=f"https://{domain}/follows/{name}-{category_slug}",
        )
        session.add(follow)
        await session.flush()
        return follow.id


async def follow_state(settings: Settings, follow_id: int) -> str | None:
    async with transaction(settings) as session:
        follow = await session.get(Follow, follow_id)
        return follow.state.value if follow is not None else None


@dataclass(frozen=True)
class Sent:
    """An activity the forum sent, and the inboxes its deliveries are queued for."""

    document: dict[str, Any]
    inboxes: list[str]


async def sent(settings: Settings, kind: str) -> list[Sent]:
    async with transaction(settings) as session:
        activities = await session.scalars(
            select(OutgoingActivity).where(OutgoingActivity.type == kind).order_by(OutgoingActivity.id)
        )
        found = []
        for activity in activities.all():
            inboxes = await session.scalars(select(Delivery.inbox_url).where(Delivery.activity_id == activity.id))
            found.append(Sent(dict(activity.document), sorted(inboxes)))
        return found
