"""Records -> the JSON shapes of API v1 (their field names are part of the contract).

Times are RFC 3339 in UTC (`2024-05-01T12:00:00Z`); `url` is the HTML page, `ap_id` the ActivityPub id.
A deleted or removed post keeps its place but shows neither its text nor its history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from forum.models import Actor, Category, PostRevision, Thread
from forum.services.reading import AuthorView, PostView, ThreadPage, ThreadSummary
from forum.services.votes import Tally

Json = dict[str, Any]


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def author(actor: AuthorView | Actor) -> Json:
    handle = actor.username if actor.local else f"{actor.username}@{actor.domain}"
    return {
        "id": actor.id,
        "name": actor.display_name or actor.username,
        "handle": handle,
        "local": actor.local,
        "url": actor.url,
    }


def member(actor: Actor) -> Json:
    return {**author(actor), "ap_id": actor.ap_id, "summary": actor.summary}


def category(found: Category, base_url: str, host: str) -> Json:
    return {
        "id": found.id,
        "slug": found.slug,
        "name": found.name,
        "description": found.description,
        "ap_id": found.actor.ap_id,
        "url": f"{base_url}/c/{found.slug}",
        "handle": f"{found.slug}@{host}" if found.local else found.slug,
        "local": found.local,
        "private": found.private,
        "thread_count": found.thread_count,
        "post_count": found.post_count,
        "last_activity_at": timestamp(found.last_activity_at),
    }


def category_ref(found: Category, base_url: str) -> Json:
    return {"id": found.id, "slug": found.slug, "name": found.name, "url": f"{base_url}/c/{found.slug}"}


def thread_summary(summary: ThreadSummary, ap_id: str | None, starter: Json, base_url: str) -> Json:
    return {
        "id": summary.id,
        "title": summary.title,
        "ap_id": ap_id,
        "url": f"{base_url}/t/{summary.id}",
        "author": starter,
        "post_count": summary.post_count,
        "created_at": timestamp(summary.created_at),
        "last_activity_at": timestamp(summary.last_activity_at),
        "pinned": summary.pinned,
        "locked": summary.locked,
        "archived": summary.archived,
    }


def thread(found: Thread, where: Category, starter: Actor, base_url: str) -> Json:
    return {
        "id": found.id,
        "title": found.title,
        "ap_id": found.ap_id,
        "url": f"{base_url}/t/{found.id}",
        "local": found.local,
        "category": category_ref(where, base_url),
        "author": author(starter),
        "locked": found.locked,
        "pinned": found.pinned,
        "archived": found.archived,
        "tags": [],
        "post_count": found.post_count,
        "created_at": timestamp(found.created_at),
        "last_activity_at": timestamp(found.last_activity_at),
    }


def thread_page(view: ThreadPage, starter: Actor, base_url: str) -> Json:
    return {
        **thread(view.thread, view.category, starter, base_url),
        "posts": [post(p, view.thread.id, base_url) for p in view.posts],
        "page": view.page,
        "page_count": view.page_count,
    }


def post(view: PostView, thread_id: int, base_url: str) -> Json:
    gone = view.deleted or view.removed
    return {
        "id": view.id,
        "ap_id": view.ap_id,
        "url": f"{base_url}/p/{view.id}",
        "thread": thread_id,
        "position": view.position,
        "author": author(view.author),
        "body": "" if gone else view.source,
        "html": "" if gone else view.html,
        "in_reply_to": view.in_reply_to_id,
        "created_at": timestamp(view.created_at),
        "edited_at": timestamp(view.edited_at),
        "deleted": view.deleted,
        "removed": view.removed,
        "revision_count": view.revision_count,
        "upvotes": view.upvotes,
        "downvotes": view.downvotes,
        "score": view.score,
    }


def tally(found: Tally) -> Json:
    return {
        "post": found.post_id,
        "upvotes": found.upvotes,
        "downvotes": found.downvotes,
        "score": found.score,
        "my_vote": found.mine,
    }


def revision(found: PostRevision) -> Json:
    return {
        "number": found.number,
        "title": found.title,
        "body": found.source,
        "html": found.html,
        "created_at": timestamp(found.created_at),
    }
