"""Domain events and their in-transaction subscribers.

Services publish an event inside the transaction that made the change; each subscriber runs there
too, so what it writes (a federation activity, a cache invalidation) commits or rolls back with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Event:
    """Base of every domain event."""


@dataclass(frozen=True)
class ThreadCreated(Event):
    thread_id: int
    category_id: int
    post_id: int


@dataclass(frozen=True)
class PostCreated(Event):
    post_id: int
    thread_id: int
    category_id: int


@dataclass(frozen=True)
class PostEdited(Event):
    post_id: int
    thread_id: int
    category_id: int


@dataclass(frozen=True)
class PostDeleted(Event):
    post_id: int
    thread_id: int
    category_id: int


@dataclass(frozen=True)
class VoteChanged(Event):
    """An actor voted on a post, changed its vote, or withdrew it (`value` 0).

    `previous_activity_id` is the `Like`/`Dislike` the earlier vote was sent or received as, for its `Undo`.
    """

    post_id: int
    thread_id: int
    category_id: int
    voter_id: int
    value: int
    previous_value: int
    previous_activity_id: str | None


@dataclass(frozen=True)
class FollowRequested(Event):
    """A member asked to follow a remote actor; the request is on its way."""

    follow_id: int


@dataclass(frozen=True)
class FollowWithdrawn(Event):
    """A member stopped following a remote actor (the follow row is gone; what it was is here)."""

    follower_id: int
    target_id: int
    activity_id: str | None


@dataclass(frozen=True)
class FollowerApproved(Event):
    """A pending follow of a category was accepted (by a concierge, or because the category stopped
    approving its followers): the follower now hears of it like any other."""

    follow_id: int


@dataclass(frozen=True)
class FollowerRejected(Event):
    """A concierge refused a pending follow of a category; the follow row is gone, what a `Reject` names is here."""

    group_id: int
    follower_id: int
    activity_id: str | None


@dataclass(frozen=True)
class CategoryChanged(Event):
    category_id: int


@dataclass(frozen=True)
class SiteChanged(Event):
    """Instance name, description, rules or theme changed: every page may show it."""


@dataclass(frozen=True)
class ThreadWatched(Event):
    """A member started watching a thread (a follow of its context); a remote thread's origin is told."""

    follow_id: int
    follower_id: int
    thread_id: int


@dataclass(frozen=True)
class ThreadUnwatched(Event):
    """A member stopped watching a thread (the follow row is gone; what an `Undo` names is here)."""

    follower_id: int
    thread_id: int
    activity_id: str | None


Subscriber = Callable[[AsyncSession, Event], Awaitable[None]]


class EventBus:
    """Who listens to which event; built by the composition root and passed to services."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[type[Event], list[Subscriber]] = defaultdict(list)

    def subscribe(self, event_type: type[Event], subscriber: Subscriber) -> None:
        self._subscribers[event_type].append(subscriber)

    async def publish(self, session: AsyncSession, event: Event) -> None:
        for event_type in type(event).__mro__:
            for subscriber in self._subscribers.get(event_type, ()):
                await subscriber(session, event)
