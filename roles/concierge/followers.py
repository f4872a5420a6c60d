"""Follow requests: remote actors waiting to follow a category that approves its followers.

The inbox stores such a `Follow` as pending (activitypub.handlers.follow). A concierge of the category
(one named for it, an instance-wide one, or an admin) lists the requests of the categories they tend,
and accepts or rejects each; the answer is a domain event (`FollowerApproved`, `FollowerRejected`)
from which federation sends the `Accept` or `Reject`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from forum.errors import N_, Forbidden, NotFound
from forum.events import EventBus, FollowerApproved, FollowerRejected
from forum.models import Actor, Category, Follow, FollowState
from forum.permissions import CONCIERGE, Viewer, require_member


@dataclass(frozen=True)
class FollowRequest:
    """One pending follow of a local category: who asks, for what, since when."""

    id: int
    category: Category
    follower: Actor
    requested_at: datetime


def require_concierge(viewer: Viewer) -> None:
    """A member with the concierge's duty somewhere (instance-wide or for one category), or an admin."""
    require_member(viewer)
    if not viewer.is_admin and not any(duty == CONCIERGE for duty, _category in viewer.grants):
        raise Forbidden(N_("Only a concierge may do this."))


def tends_everything(viewer: Viewer) -> bool:
    return viewer.is_admin or (CONCIERGE, None) in viewer.grants


async def pending_requests(
    session: AsyncSession, viewer: Viewer, category: Category | None = None
) -> list[FollowRequest]:
    """The requests the viewer may answer, oldest first; only those of `category` when given."""
    require_concierge(viewer)
    query = _requests()
    if category is not None:
        _require_tends(viewer, category)
        query = query.where(Category.id == category.id)
    elif not tends_everything(viewer):
        tended = {category_id for duty, category_id in viewer.grants if duty == CONCIERGE}
        query = query.where(Category.id.in_(tended))
    rows = await session.execute(query.order_by(Follow.created_at, Follow.id))
    return [FollowRequest(follow.id, found, follower, follow.created_at) for follow, found, follower in rows]


async def accept_request(session: AsyncSession, bus: EventBus, viewer: Viewer, follow_id: int) -> FollowRequest:
    """The follower becomes a follower like any other: the category's new threads reach it."""
    request, follow = await _tended_request(session, viewer, follow_id)
    if request.category.private:
        raise Forbidden(
            N_("“%(name)s” is private: nobody elsewhere may follow it. Reject the request."),
            name=request.category.name,
        )
    follow.state = FollowState.ACCEPTED
    await session.flush()
    await bus.publish(session, FollowerApproved(follow.id))
    return request


async def reject_request(session: AsyncSession, bus: EventBus, viewer: Viewer, follow_id: int) -> FollowRequest:
    """The request is forgotten; the `Reject` names it, so the follower's server forgets it too."""
    request, follow = await _tended_request(session, viewer, follow_id)
    event = FollowerRejected(request.category.actor_id, request.follower.id, follow.activity_id)
    await session.delete(follow)
    await session.flush()
    await bus.publish(session, event)
    return request


def _requests() -> Select[Follow, Category, Actor]:
    follower = aliased(Actor, name="follower")
    return (
        select(Follow, Category, follower)
        .join(Category, Category.actor_id == Follow.target_id)
        .join(follower, follower.id == Follow.follower_id)
        .where(Follow.state == FollowState.PENDING, Category.local.is_(True))
    )


def _require_tends(viewer: Viewer, category: Category) -> None:
    if not viewer.has_duty(CONCIERGE, category.id):
        raise Forbidden(N_("Only a concierge of “%(name)s” may answer its follow requests."), name=category.name)


async def _tended_request(session: AsyncSession, viewer: Viewer, follow_id: int) -> tuple[FollowRequest, Follow]:
    require_concierge(viewer)
    row = (await session.execute(_requests().where(Follow.id == follow_id))).first()
    if row is None:
        raise NotFound(N_("No such follow request (it may have been answered already)."))
    follow, category, follower = row
    _require_tends(viewer, category)
    return FollowRequest(follow.id, category, follower, follow.created_at), follow
