"""`GET /api/v1/resolve?q=`: a handle or address -> the local record it names.

Local forms: `name`, `@name`, `name@<our host>`, `acct:name@<our host>`, `<base_url>/u/name`,
`/c/slug`, `/t/ID`, `/p/ID` (with or without our origin). Anything on another host needs
federation: the forum's `RemoteResolver` fetches it (WebFinger, then a signed fetch) and stores it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forum.config import Settings
from forum.errors import InvalidInput, NotFound
from forum.models import Actor, ActorKind, Category
from forum.permissions import Viewer, can_see_category
from forum.ports import RemoteResolver
from forum.web.api import records, serializers
from forum.web.api.bodies import MAX_ID
from forum.web.api.serializers import Json

LOCAL_PATH = re.compile(r"^/(?P<kind>[uctp])/(?P<key>[^/]+)/?$")
MAX_QUERY = 2048


class RemoteUnavailable(NotFound):
    """The name or address is on another server, which did not give it to us."""

    def __init__(self, target: str, field: str = "q") -> None:
        super().__init__(
            f"“{target}” could not be found on its server (it may not exist, or its server did not answer).",
            field=field,
        )


async def resolve(
    session: AsyncSession, settings: Settings, viewer: Viewer, query: str, remote: RemoteResolver
) -> Json:
    query = query.strip()
    if not query:
        raise InvalidInput("Say what to look up in “q”: a name, name@host, or an address.", field="q")
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"“q” has at most {MAX_QUERY} characters.", field="q")
    if query.lower().startswith(("http://", "https://")):
        parts = urlsplit(query)
        if f"{parts.scheme}://{parts.netloc}".lower() != settings.origin.lower():
            return await _remote(session, settings, viewer, query, remote)
        return await _by_path(session, settings, viewer, parts.path or "/")
    if query.startswith("/"):
        return await _by_path(session, settings, viewer, urlsplit(query).path)
    handle = query.removeprefix("acct:").removeprefix("@")
    name, _, host = handle.partition("@")
    if host and host.lower() != settings.host.lower():
        return await _remote(session, settings, viewer, handle, remote)
    return await _by_name(session, settings, viewer, name)


async def _remote(
    session: AsyncSession, settings: Settings, viewer: Viewer, query: str, remote: RemoteResolver
) -> Json:
    if query.lower().startswith(("http://", "https://")):
        post = await remote.resolve_post(session, query)
        if post is not None:
            return await _by_path(
                session, settings, viewer, f"/p/{post.id}" if post.position > 1 else f"/t/{post.thread_id}"
            )
    actor = await remote.resolve_actor(session, query)
    if actor is None:
        raise RemoteUnavailable(query)
    return await actor_record(session, settings, viewer, actor)


async def actor_record(session: AsyncSession, settings: Settings, viewer: Viewer, actor: Actor) -> Json:
    """A member or category record for an actor, local or remote."""
    if actor.kind == ActorKind.GROUP:
        category = await session.scalar(select(Category).where(Category.actor_id == actor.id))
        if category is not None and can_see_category(viewer, category.id, category.private):
            category.actor = actor
            return {"type": "category", **serializers.category(category, settings.base_url, settings.host)}
        raise NotFound("No such category.", field="q")
    return {"type": "member", **serializers.member(actor)}


async def _by_path(session: AsyncSession, settings: Settings, viewer: Viewer, path: str) -> Json:
    match = LOCAL_PATH.match(path)
    if match is None:
        raise NotFound("This address names no member, category, thread or post here.", field="q")
    kind, key = match["kind"], match["key"]
    if kind in "uc":
        return await _by_name(session, settings, viewer, key)
    if not (key.isascii() and key.isdigit() and len(key) <= 10 and 1 <= int(key) <= MAX_ID):
        raise NotFound("No such thread or post.", field="q")
    if kind == "t":
        thread, category, starter = await records.visible_thread(session, viewer, int(key))
        return {"type": "thread", **serializers.thread(thread, category, starter, settings.base_url)}
    post, thread_id = await records.visible_post(session, viewer, int(key))
    return {"type": "post", **serializers.post(post, thread_id, settings.base_url)}


async def _by_name(session: AsyncSession, settings: Settings, viewer: Viewer, name: str) -> Json:
    actor = await session.scalar(select(Actor).where(Actor.username_key == name.lower(), Actor.domain == ""))
    if actor is not None and actor.kind == ActorKind.PERSON:
        return {"type": "member", **serializers.member(actor)}
    if actor is not None and actor.kind == ActorKind.GROUP:
        category = await session.scalar(select(Category).where(Category.actor_id == actor.id))
        if category is not None and can_see_category(viewer, category.id, category.private):
            return {"type": "category", **serializers.category(category, settings.base_url, settings.host)}
    raise NotFound(f"No member or category is named “{name}” here.", field="q")
