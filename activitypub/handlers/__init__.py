"""Incoming activities, dispatched by type through one table to one module per family.

A handler gets a `Received` (the session of the worker's transaction, the federation, the normalized
activity) and returns a short outcome, raises `HandlerRefused` (kept, not retried) or `HandlerFailed`
(retried with backoff, e.g. a parent that could not be fetched yet).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from activitypub.handlers import content, follow, moderation, reactions
from activitypub.handlers.base import HandlerFailed, HandlerRefused, Received

Handler = Callable[[Received], Awaitable[str | None]]

HANDLERS: dict[str, Handler] = {
    "Follow": follow.on_follow,
    "Accept": follow.on_accept,
    "Reject": follow.on_reject,
    "Create": content.on_create,
    "Update": content.on_update,
    "Delete": content.on_delete,
    "Announce": lambda received: content.on_announce(received, dispatch),
    "Like": reactions.on_vote,
    "Dislike": reactions.on_vote,
    "Flag": moderation.keep,
    "Block": moderation.keep,
    "Lock": moderation.on_lock,
    "Add": moderation.on_add,
    "Remove": moderation.on_remove,
}

UNDO_HANDLERS: dict[str, Handler] = {
    "Follow": follow.on_undo_follow,
    "Like": reactions.on_undo_vote,
    "Dislike": reactions.on_undo_vote,
    "Lock": moderation.on_unlock,
    "Block": moderation.keep,
    "Announce": moderation.ignore,
}


async def dispatch(received: Received) -> str | None:
    kind = received.type
    if kind == "Undo":
        inner = await received.inner_activity()
        handler = UNDO_HANDLERS.get(str(inner.get("type")))
        if handler is None:
            raise HandlerRefused(f"Undo of {inner.get('type')} is not supported")
        if received.single(inner.get("actor")) not in (None, received.actor_id):
            raise HandlerRefused("an actor may only undo its own activities")
        return await handler(received.undoing(inner))
    handler = HANDLERS.get(kind)
    if handler is None:
        raise HandlerRefused(f"{kind} activities are not supported")
    return await handler(received)


__all__ = ["HANDLERS", "HandlerFailed", "HandlerRefused", "Received", "dispatch"]
