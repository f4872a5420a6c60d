"""Moderation from elsewhere: `Flag` and `Block` kept for the concierge, and a remote Group's own
`Lock`, `Add`/`Remove` (featured) applied to our copy of its threads."""

from __future__ import annotations

from activitypub.handlers.base import HandlerRefused, Received
from forum.models import Actor, Thread


async def keep(received: Received) -> str:
    # The stored activity row is the record; the concierge's report queue reads it (issue: reports).
    return f"{received.type} kept for the concierge"


async def ignore(received: Received) -> str:
    return f"{received.type} ignored"


async def _remote_thread(received: Received, object_id: str | None) -> Thread:
    found = await received.post_by_id(object_id)
    if found is None:
        raise HandlerRefused("the thread is unknown here")
    thread = found[1]
    category = await received.category_of(thread)
    group = await received.session.get(Actor, category.actor_id)
    assert group is not None
    authorized = received.actor_id == group.ap_id or received.via_group is group
    if group.local or not authorized:
        raise HandlerRefused("only a remote category's own Group moderates its threads here")
    return thread


async def on_lock(received: Received) -> str:
    thread = await _remote_thread(received, received.object_id)
    thread.locked, thread.version = True, thread.version + 1
    return f"thread {thread.id} locked"


async def on_unlock(received: Received) -> str:
    thread = await _remote_thread(received, received.object_id)
    thread.locked, thread.version = False, thread.version + 1
    return f"thread {thread.id} unlocked"


async def _featured(received: Received, pinned: bool) -> str:
    target = received.single(received.activity.get("target")) or ""
    if not target.endswith("/featured"):
        return f"{received.type} to {target or 'nothing'} ignored"
    thread = await _remote_thread(received, received.object_id)
    thread.pinned, thread.version = pinned, thread.version + 1
    return f"thread {thread.id} {'pinned' if pinned else 'unpinned'}"


async def on_add(received: Received) -> str:
    return await _featured(received, True)


async def on_remove(received: Received) -> str:
    return await _featured(received, False)
