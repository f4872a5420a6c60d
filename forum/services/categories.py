"""Categories: creating, editing, ordering and listing them as a viewer may see them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from forum.errors import N_, InvalidInput, NotFound
from forum.events import CategoryChanged, EventBus, FollowerApproved
from forum.models import Actor, ActorKind, Category, Follow, FollowState
from forum.models.base import is_id
from forum.permissions import Viewer, can_see_category
from forum.services.actors import check_name, create_local_actor, ensure_name_free

MAX_NAME = 100
MAX_DESCRIPTION = 2000


def _check_texts(name: str, description: str) -> None:
    if not name.strip():
        raise InvalidInput(N_("Give the category a name."), field="name")
    if len(name) > MAX_NAME:
        raise InvalidInput(N_("A category name has at most %(count)d characters."), field="name", count=MAX_NAME)
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            N_("A description has at most %(count)d characters."), field="description", count=MAX_DESCRIPTION
        )


async def create_category(
    session: AsyncSession,
    bus: EventBus,
    base_url: str,
    *,
    slug: str,
    name: str,
    description: str = "",
    private: bool = False,
    approve_followers: bool = False,
) -> Category:
    """A new local category and its Group actor; slugs share the usernames' namespace."""
    slug = slug.strip()
    check_name(slug, what="slug")
    _check_texts(name, description)
    await ensure_name_free(session, slug, what="slug")
    actor = await create_local_actor(session, base_url, ActorKind.GROUP, slug, name.strip())
    actor.summary = description.strip()
    position = (await session.scalar(select(func.max(Category.position)))) or 0
    category = Category(
        actor_id=actor.id,
        slug=slug,
        name=name.strip(),
        description=description.strip(),
        private=private,
        approve_followers=approve_followers,
        position=position + 1,
    )
    category.actor = actor
    session.add(category)
    await session.flush()
    await bus.publish(session, CategoryChanged(category.id))
    return category


async def update_category(
    session: AsyncSession,
    bus: EventBus,
    category: Category,
    *,
    name: str,
    description: str,
    private: bool,
    approve_followers: bool | None = None,
) -> None:
    """`approve_followers` None leaves that setting as it is."""
    _check_texts(name, description)
    category.name = name.strip()
    category.description = description.strip()
    category.private = private
    category.actor.display_name = category.name
    category.actor.summary = category.description
    # A private category takes no followers from elsewhere: its waiting requests stay for a concierge to refuse.
    stops_approving = category.approve_followers and approve_followers is False and not private
    if approve_followers is not None:
        category.approve_followers = approve_followers
    await session.flush()
    if stops_approving:
        await _accept_waiting_followers(session, bus, category)
    await bus.publish(session, CategoryChanged(category.id))


async def _accept_waiting_followers(session: AsyncSession, bus: EventBus, category: Category) -> None:
    """Nobody is left to answer the requests of a category that no longer approves its followers:
    each is accepted as a new follow would be now (federation sends the `Accept`)."""
    waiting = await session.scalars(
        select(Follow).where(Follow.target_id == category.actor_id, Follow.state == FollowState.PENDING)
    )
    for follow in list(waiting):
        follow.state = FollowState.ACCEPTED
        await session.flush()
        await bus.publish(session, FollowerApproved(follow.id))


async def move_category(session: AsyncSession, bus: EventBus, category_id: int, offset: int) -> None:
    """Swap a category with its neighbour above (offset -1) or below (+1)."""
    ordered = list(await session.scalars(select(Category).order_by(Category.position, Category.id)))
    index = next((i for i, c in enumerate(ordered) if c.id == category_id), None)
    if index is None:
        raise NotFound(N_("No such category."))
    other = index + offset
    if 0 <= other < len(ordered):
        ordered[index], ordered[other] = ordered[other], ordered[index]
        for position, category in enumerate(ordered, start=1):
            category.position = position
        await session.flush()
        await bus.publish(session, CategoryChanged(category_id))


async def list_categories(session: AsyncSession, viewer: Viewer) -> list[Category]:
    result = await session.scalars(select(Category).order_by(Category.position, Category.id))
    return [c for c in result if can_see_category(viewer, c.id, c.private)]


async def get_category(session: AsyncSession, viewer: Viewer, id_or_slug: str | int) -> Category:
    """A category by id or slug that the viewer may see; NotFound otherwise (private ones included)."""
    query = select(Category)
    if isinstance(id_or_slug, int) or str(id_or_slug).isdigit():
        # An id the database cannot hold names no category (and would make the query fail).
        query = query.where(Category.id == (int(id_or_slug) if is_id(str(id_or_slug)) else 0))
    else:
        # `name` is a local category; `name@host` a remote one the forum knows (its handle is its slug).
        name, _, domain = str(id_or_slug).lower().partition("@")
        query = query.join(Category.actor).where(Actor.username_key == name, Actor.domain == domain)
    category = await session.scalar(query)
    if category is None or not can_see_category(viewer, category.id, category.private):
        raise NotFound(N_("No category “%(name)s”."), name=str(id_or_slug))
    return category
