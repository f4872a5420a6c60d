"""`Create`, `Update`, `Delete` and `Announce`: threads and replies written elsewhere.

A `Page`, `Article` or `Note` addressed to a category (its `audience`, or the Group in `to`/`cc`) with
no `inReplyTo` opens a thread; one with `inReplyTo` a known post is a reply (missing parents are
fetched, a few levels up). When the category is ours, its Group announces the activity to its
followers (FEP-1b12). An `Announce` from a remote Group is unwrapped; an inner activity that its
author's server did not sign is not believed as sent: its object is fetched from its origin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.audiences import Target, domain_of, follower_targets, targets_by_inbox, thread_follower_targets
from activitypub.handlers.base import ACTIVITY_TYPES, HandlerFailed, HandlerRefused, Received
from activitypub.objects import CONTEXT, PUBLIC
from activitypub.outbox import new_activity_id, record_activities, record_activity
from activitypub.protocol.client import FetchError
from activitypub.protocol.jsonld import DocumentError
from activitypub.resolver import ResolveError
from forum.models import Actor, ActorKind, Category
from forum.models.base import utcnow
from forum.services import received as received_content

POST_TYPES = {"Page", "Article", "Note", "Question"}
MAX_PARENT_DEPTH = 8


async def on_create(received: Received) -> str:
    obj = await _object(received)
    return await store_post(received, obj)


async def _object(received: Received) -> dict[str, Any]:
    value = received.activity.get("object")
    if isinstance(value, dict) and value.get("type"):
        return value
    if received.object_id is None:
        raise HandlerRefused("the activity has no object")
    return await received.fetch(received.object_id)


async def store_post(received: Received, obj: dict[str, Any], depth: int = 0, *, backfilled: bool = False) -> str:
    """Store a thread or a reply. `backfilled`: read from a thread's `context` collection, not sent to us, so
    our Group announces nothing (it is not news), and a locked thread still takes what was written in it."""
    object_id, kind = obj.get("id"), obj.get("type")
    if not isinstance(object_id, str) or kind not in POST_TYPES:
        raise HandlerRefused(f"a {kind} is not something a forum shows")
    if domain_of(object_id) == received.federation.settings.host.lower():
        raise HandlerRefused("a copy of one of our own posts never overwrites it")
    if await received.post_by_id(object_id) is not None:
        return "already known"
    author_id = received.single(obj.get("attributedTo"))
    if author_id is None or domain_of(author_id) != domain_of(object_id):
        raise HandlerRefused("the post's author is not on the post's host")
    if _is_private(obj):
        raise HandlerRefused("private messages are not supported: this is a forum")
    author = await received.remote_actor(author_id)
    parent_id = received.single(obj.get("inReplyTo"))
    if parent_id is not None:
        return await _store_reply(received, obj, author, parent_id, depth, backfilled)
    category = await _addressed_category(received, obj)
    if category is None:
        raise HandlerRefused("the post is addressed to no category of this forum")
    if category.local and (category.private or category.posting_restricted_to_mods):
        raise HandlerRefused("this category takes no threads from elsewhere")
    thread, _ = await received_content.add_thread(
        received.session,
        received.federation.bus,
        category,
        author.id,
        ap_id=object_id,
        title=str(obj.get("name") or ""),
        html=str(obj.get("content") or ""),
        source=markdown_source(obj),
        published=received_time(obj.get("published")),
        context_id=received.single(obj.get("context")),
        remote_url=received_url(obj),
    )
    # Met here for the first time (sent, announced, a reply's parent or looked up): the conversation so far is
    # read from its `context` collection by the backfill job (activitypub.backfill), off this transaction.
    thread.backfill_due_at = utcnow()
    if depth == 0 and not backfilled:
        # Only the activity received is announced: a parent fetched for a reply was not sent to us.
        await announce_if_ours(received, category)
    return f"thread {thread.id}"


async def _store_reply(
    received: Received, obj: dict[str, Any], author: Actor, parent_id: str, depth: int, backfilled: bool
) -> str:
    parent = await received.post_by_id(parent_id)
    if parent is None:
        if depth >= MAX_PARENT_DEPTH:
            raise HandlerRefused("the conversation goes back further than this forum fetches")
        await store_post(received, await received.fetch(parent_id), depth + 1, backfilled=backfilled)
        parent = await received.post_by_id(parent_id)
        if parent is None:
            raise HandlerFailed(f"the post answered ({parent_id}) could not be found")
    parent_post, thread = parent
    category = await received.category_of(thread)
    if (thread.locked or thread.archived) and not backfilled:
        raise HandlerRefused("the thread is locked")
    if category.private:
        raise HandlerRefused("the thread is in a private category")
    post = await received_content.add_reply(
        received.session,
        received.federation.bus,
        thread,
        author.id,
        ap_id=str(obj["id"]),
        html=str(obj.get("content") or ""),
        source=markdown_source(obj),
        in_reply_to=parent_post.id if parent_post.position > 1 else None,
        published=received_time(obj.get("published")),
        remote_url=received_url(obj),
    )
    if depth == 0 and not backfilled:
        await announce_if_ours(received, category, thread.id)
    return f"reply {post.id} in thread {thread.id}"


async def _addressed_category(received: Received, obj: dict[str, Any]) -> Category | None:
    """The category a post is for: its `audience`, else a Group of ours (or one we follow) it is sent to."""
    candidates = [*_ids(obj.get("audience")), *_ids(received.activity.get("audience"))]
    candidates += [*_ids(obj.get("to")), *_ids(obj.get("cc"))]
    candidates += [
        received.single(tag.get("href")) or "" for tag in _dicts(obj.get("tag")) if tag.get("type") == "Mention"
    ]
    if received.via_group is not None:
        candidates.append(received.via_group.ap_id)
    candidates = [c for c in dict.fromkeys(candidates) if c and c != PUBLIC]
    if not candidates:
        return None
    return await received.session.scalar(
        select(Category)
        .join(Actor, Actor.id == Category.actor_id)
        .where(Actor.ap_id.in_(candidates), Actor.kind == ActorKind.GROUP)
        .limit(1)
    )


async def announce_if_ours(received: Received, category: Category, thread_id: int | None = None) -> None:
    """FEP-1b12: our Group passes what it received on to its followers (never back to the sender's host).

    Followers whose software reads Groups get every activity announced, and so do the followers of the
    thread's context (`thread_id`: a post, its edit or its deletion): they asked for that thread's news,
    whoever wrote it. The others (Mastodon…) get only new threads, as `Announce(Page)`, the one form they
    show; replies, edits and votes would be noise there.
    """
    if not category.local or received.via_group is not None:
        return
    group = await received.session.get(Actor, category.actor_id)
    assert group is not None
    sender = domain_of(received.actor_id)
    followers = [t for t in await follower_targets(received.session, group.id) if t.domain != sender]
    group_aware = [t for t in followers if t.understands_groups]
    if thread_id is not None:
        in_thread = await thread_follower_targets(received.session, thread_id)
        group_aware = targets_by_inbox([*group_aware, *(t for t in in_thread if t.domain != sender)])
    inner = {key: value for key, value in received.activity.items() if key != "@context"}
    await _announce(received, group, inner, group_aware)
    obj = inner.get("object")
    if received.type == "Create" and isinstance(obj, dict) and not obj.get("inReplyTo"):
        await _announce(received, group, obj, [t for t in followers if not t.understands_groups])


async def announce_many_if_ours(
    session: AsyncSession, base_url: str, received: Sequence[tuple[dict[str, Any], Category, int | None]]
) -> None:
    """`announce_if_ours` for a batch of activities applied together (each sent to us directly, none a new
    thread): the followers of each category and thread are read once, the announcements written at once."""
    by_group: dict[int, list[Target]] = {}
    by_thread: dict[int, list[Target]] = {}
    batch: list[tuple[Actor, dict[str, Any], list[Target]]] = []
    for activity, category, thread_id in received:
        if not category.local:
            continue
        if category.actor_id not in by_group:
            found = await follower_targets(session, category.actor_id)
            by_group[category.actor_id] = [t for t in found if t.understands_groups]
        candidates = list(by_group[category.actor_id])
        if thread_id is not None:
            if thread_id not in by_thread:
                by_thread[thread_id] = await thread_follower_targets(session, thread_id)
            candidates += by_thread[thread_id]
        sender = domain_of(Received.single(activity.get("actor")) or "")
        targets = targets_by_inbox(t for t in candidates if t.domain != sender)
        if not targets:
            continue
        group = await session.get(Actor, category.actor_id)
        assert group is not None
        inner = {key: value for key, value in activity.items() if key != "@context"}
        batch.append((group, group_announce(base_url, group, inner), targets))
    await record_activities(session, batch)


async def _announce(received: Received, group: Actor, inner: dict[str, Any], targets: list[Target]) -> None:
    if not targets:
        return
    announce = group_announce(received.federation.settings.base_url, group, inner)
    await record_activity(received.session, group, announce, targets)


def group_announce(base_url: str, group: Actor, inner: dict[str, Any]) -> dict[str, Any]:
    """Our Group's `Announce` of what it received (the inner activity, or a Page for Mastodon)."""
    return {
        "@context": CONTEXT,
        "id": new_activity_id(base_url),
        "type": "Announce",
        "actor": group.ap_id,
        "to": [PUBLIC],
        "cc": [group.followers_url] if group.followers_url else [],
        "audience": group.ap_id,
        "object": inner,
    }


async def on_update(received: Received) -> str:
    obj = await _object(received)
    object_id = received.single(obj)
    if obj.get("type") in ("Person", "Group", "Service", "Application", "Organization"):
        if object_id != received.actor_id and not received.via_group:
            raise HandlerRefused("an actor may only update itself")
        await received.federation.resolver.store_actor(received.session, await received.fetch(str(object_id)))
        return "actor refreshed"
    found = await received.post_by_id(object_id)
    if found is None:
        return await on_create(received) if obj.get("type") in POST_TYPES else "unknown object"
    post, thread = found
    author = await received.session.get(Actor, post.author_id)
    if author is None or author.ap_id != received.actor_id:
        raise HandlerRefused("only its author may edit a post")
    await received_content.edit(
        received.session,
        received.federation.bus,
        post,
        thread,
        html=str(obj.get("content") or ""),
        source=markdown_source(obj),
        title=str(obj["name"]) if obj.get("name") else None,
        editor_id=author.id,
    )
    await announce_if_ours(received, await received.category_of(thread), thread.id)
    return f"post {post.id} edited"


async def on_delete(received: Received) -> str:
    object_id = received.object_id
    if object_id == received.actor_id:
        actor = await received.session.scalar(select(Actor).where(Actor.ap_id == object_id, Actor.local.is_(False)))
        if actor is not None:
            actor.gone_at = actor.gone_at or utcnow()
        return "actor deleted"
    found = await received.post_by_id(object_id)
    if found is None:
        return "unknown object"
    post, thread = found
    author = await received.session.get(Actor, post.author_id)
    category = await received.category_of(thread)
    group = await received.session.get(Actor, category.actor_id)
    assert author is not None and group is not None
    if author.ap_id == received.actor_id and not author.local:
        await received_content.delete(received.session, received.federation.bus, post, thread, removed=False)
        await announce_if_ours(received, category, thread.id)
        return f"post {post.id} deleted"
    if (not group.local and received.actor_id == group.ap_id) or received.via_group is group:
        # The Group's own moderation, announced by it: its moderators are its business.
        await received_content.delete(received.session, received.federation.bus, post, thread, removed=True)
        return f"post {post.id} removed by its category's moderators"
    raise HandlerRefused("only its author or its category's moderators may delete a post")


async def on_announce(received: Received, dispatch: Callable[[Received], Awaitable[str | None]]) -> str:
    announcer = await received.actor()
    value = received.activity.get("object")
    if announcer.kind != ActorKind.GROUP:
        return "boost ignored"  # a person's boost adds nothing to a thread
    inner = value if isinstance(value, dict) else await received.fetch(str(received.object_id))
    if inner.get("type") not in ACTIVITY_TYPES:
        # Announce(Page) / Announce(Note): the object itself, as Mastodon-compatible Groups send it.
        inner = {
            "id": f"{inner.get('id')}#announced",
            "type": "Create",
            "actor": inner.get("attributedTo"),
            "object": inner,
        }
    inner_actor = received.single(inner.get("actor")) or ""
    trusted = domain_of(inner_actor) == domain_of(announcer.ap_id)
    wrapped = received.wrapped(inner, announcer)
    if inner.get("type") in ("Create", "Update") and not trusted:
        # Not signed by its author's server: believe only what that server serves.
        object_id = wrapped.object_id
        if object_id is None:
            raise HandlerRefused("the announced activity has no object")
        wrapped = received.wrapped(inner | {"object": await received.fetch(object_id)}, announcer)
    elif inner.get("type") == "Delete" and not trusted:
        object_id = wrapped.object_id
        if object_id is None or await _still_there(received, object_id):
            raise HandlerRefused("an announced Delete whose object still exists at its origin")
    elif inner.get("type") in VERIFIABLE_BY_FETCH and not trusted:
        # Votes and their Undo carry no object to re-fetch: the activity itself must be served by its origin.
        served = await _served_by_origin(received, inner)
        if served is None:
            return f"announced {inner.get('type')} ignored: its origin does not serve it"
        wrapped = received.wrapped(served, announcer)
    elif not trusted:
        return f"announced {inner.get('type')} ignored: not signed by its author"
    return await dispatch(wrapped) or "done"


VERIFIABLE_BY_FETCH = {"Like", "Dislike", "Undo"}


async def _served_by_origin(received: Received, inner: dict[str, Any]) -> dict[str, Any] | None:
    """The announced activity as its author's server serves it, if it says the same thing; else None."""
    activity_id, actor_id = inner.get("id"), received.single(inner.get("actor"))
    if not isinstance(activity_id, str) or actor_id is None or domain_of(activity_id) != domain_of(actor_id):
        return None
    try:
        served = await received.federation.resolver.fetch(activity_id)
    except (ResolveError, FetchError, DocumentError):  # unreachable, refused, not JSON: not believed
        return None
    same = (
        served.get("id") == activity_id
        and served.get("type") == inner.get("type")
        and received.single(served.get("actor")) == actor_id
        and received.single(served.get("object")) == received.single(inner.get("object"))
    )
    return served if same else None


async def _still_there(received: Received, object_id: str) -> bool:
    try:
        document = await received.federation.resolver.fetch(object_id)
    except (ResolveError, FetchError, DocumentError):
        return False
    return document.get("type") != "Tombstone"


def _is_private(obj: dict[str, Any]) -> bool:
    """Addressed to specific people only: no public, no followers collection, no Group, no thread."""
    audience = [*_ids(obj.get("to")), *_ids(obj.get("cc")), *_ids(obj.get("audience"))]
    if PUBLIC in audience or obj.get("audience") or obj.get("inReplyTo"):
        return False
    return not any(a.endswith(("/followers", "/members")) for a in audience)


def markdown_source(obj: dict[str, Any]) -> str | None:
    """The Markdown a post was written in, when its server sent it (Lemmy, PieFed and Jardin do)."""
    source = obj.get("source")
    if isinstance(source, dict) and str(source.get("mediaType", "")).startswith("text/markdown"):
        content = source.get("content")
        return content if isinstance(content, str) else None
    return None


def received_url(obj: dict[str, Any]) -> str | None:
    """Where a browser reads the post at its origin, when that differs from its id."""
    value = obj.get("url")
    for item in value if isinstance(value, list) else [value]:
        href = item.get("href") if isinstance(item, dict) else item
        if isinstance(href, str) and href.startswith(("https://", "http://")) and href != obj.get("id"):
            return href
    return None


def received_time(value: object) -> datetime | None:
    """A timestamp sent by a peer, or None when it is missing, malformed or has no time zone."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _ids(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [i if isinstance(i, str) else str(i.get("id")) for i in items if isinstance(i, str | dict)]


def _dicts(value: object) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [i for i in items if isinstance(i, dict)]
