"""Members following categories and members, here or elsewhere.

A local target is followed at once; a remote one waits for its server's `Accept` (federation sends
the `Follow` when `FollowRequested` is published, and the `Undo` on `FollowWithdrawn`).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from forum.errors import N_, InvalidInput, NotFound
from forum.events import EventBus, FollowRequested, FollowWithdrawn
from forum.models import Actor, ActorKind, Category, Follow, FollowState
from forum.permissions import Viewer, can_see_category, require_member


async def follow(session: AsyncSession, bus: EventBus, viewer: Viewer, target: Actor) -> Follow:
    require_member(viewer)
    assert viewer.actor_id is not None
    if target.id == viewer.actor_id:
        raise InvalidInput(N_("You cannot follow yourself."), field="target")
    if target.kind == ActorKind.APPLICATION:
        raise InvalidInput(
            N_("An instance cannot be followed; follow one of its categories or members."), field="target"
        )
    if target.local and target.kind == ActorKind.GROUP:
        category = await session.scalar(select(Category).where(Category.actor_id == target.id))
        if category is None or not can_see_category(viewer, category.id, category.private):
            raise NotFound(N_("No such category."), field="target")
    existing = await session.scalar(
        select(Follow).where(Follow.follower_id == viewer.actor_id, Follow.target_id == target.id)
    )
    if existing is not None:
        return existing
    created = Follow(
        follower_id=viewer.actor_id,
        target_id=target.id,
        state=FollowState.ACCEPTED if target.local else FollowState.PENDING,
    )
    session.add(created)
    await session.flush()
    if not target.local:
        await bus.publish(session, FollowRequested(created.id))
    return created


async def unfollow(session: AsyncSession, bus: EventBus, viewer: Viewer, target: Actor) -> bool:
    require_member(viewer)
    existing = await session.scalar(
        select(Follow).where(Follow.follower_id == viewer.actor_id, Follow.target_id == target.id)
    )
    if existing is None:
        return False
    if not target.local:
        await bus.publish(session, FollowWithdrawn(existing.follower_id, target.id, existing.activity_id))
    # A statement, not `session.delete`: a second click deleting the same row deletes nothing, and is no error.
    await session.execute(delete(Follow).where(Follow.id == existing.id))
    return True
