"""API v1 calls for watching: watch and stop watching a thread, and list what the caller watches.

Categories are watched with `POST /api/v1/follows` (a category is followed like any actor); this lists
them with their state. The calls are documented as an OpenAPI `SECTION`, registered by the app.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum.services import watching
from forum.web.api import serializers
from forum.web.api.auth import Caller
from forum.web.api.bodies import path_id
from forum.web.api.endpoint import endpoint, json_response
from forum.web.api.openapi import Section, ok, operation, path_param
from forum.web.api.schemas import Json, array, boolean, integer, obj, ref, string
from forum.web.context import forum_context

PREFIX = "/api/v1"


@endpoint
async def watch_thread(request: Request, caller: Caller) -> Response:
    """PUT watches (what the thread holds now counts as read), DELETE stops; both are idempotent."""
    caller.require_member()
    forum = forum_context(request)
    thread_id = path_id(request, "thread_id", "thread")
    try:
        async with forum.write() as session:
            if request.method == "PUT":
                await watching.watch_thread(session, forum.bus, caller.viewer, thread_id)
            else:
                await watching.unwatch_thread(session, forum.bus, caller.viewer, thread_id)
    except IntegrityError:
        pass  # the same call at the same moment made the watch first
    return Response(status_code=204)


@endpoint
async def list_watching(request: Request, caller: Caller) -> Response:
    caller.require_member()
    forum = forum_context(request)
    settings = forum.settings
    async with forum.read() as session:
        found = await watching.watching(session, caller.viewer, latest=0)
    return json_response(
        {
            "categories": [
                {**serializers.category(w.category, settings.base_url, settings.host), "state": w.state.value}
                for w in found.categories
            ],
            "threads": [_thread(t, settings.base_url) for t in found.threads],
        }
    )


def _thread(found: watching.WatchedThread, base_url: str) -> Json:
    return {
        "id": found.id,
        "title": found.title,
        "ap_id": found.ap_id,
        "url": f"{base_url}/t/{found.id}",
        "local": found.local,
        "category": {
            "id": found.category_id,
            "slug": found.category_slug,
            "name": found.category_name,
            "url": f"{base_url}/c/{found.category_slug}",
        },
        "post_count": found.post_count,
        "last_activity_at": serializers.timestamp(found.last_activity_at),
        "last_read_position": found.last_read_position,
        "unread": found.unread,
    }


routes = [
    Route(f"{PREFIX}/watching", list_watching, methods=["GET"]),
    Route(f"{PREFIX}/threads/{{thread_id}}/watch", watch_thread, methods=["PUT", "DELETE"]),
]

_THREAD_ID = path_param("thread_id", "the thread's id", integer())
SECTION = Section(
    tag="watching",
    paths={
        "/watching": {
            "get": operation(
                "listWatching",
                "What you watch: categories (with their follow state) and threads, newest activity first",
                "watching",
                ok("Your watched categories and threads", ref("Watching")),
                auth=True,
            )
        },
        "/threads/{thread_id}/watch": {
            "parameters": [_THREAD_ID],
            "put": operation(
                "watchThread",
                "Watch a thread: its new posts are counted as unread until you read them",
                "watching",
                {"204": {"description": "Watched (watching twice is one watch)"}},
                auth=True,
                description="For a thread of another server, a `Follow` of its context is sent there (FEP-7888); "
                "the watch holds here whatever that server answers.",
            ),
            "delete": operation(
                "unwatchThread",
                "Stop watching a thread",
                "watching",
                {"204": {"description": "Not watched (also when it was not)"}},
                auth=True,
            ),
        },
    },
    schemas={
        "WatchedCategory": {
            "allOf": [
                ref("Category"),
                obj(
                    {
                        "state": {
                            "type": "string",
                            "enum": ["pending", "accepted"],
                            "description": "pending until a remote category's server accepts",
                        }
                    }
                ),
            ]
        },
        "WatchedThread": obj(
            {
                "id": integer(),
                "title": string(),
                "ap_id": string("ActivityPub id", "uri", nullable=True),
                "url": string("its page", "uri"),
                "local": boolean(),
                "category": ref("CategoryRef"),
                "post_count": integer(),
                "last_activity_at": string("RFC 3339, UTC", "date-time"),
                "last_read_position": integer("how many of its posts (numbered from 1) you have seen"),
                "unread": integer("posts you have not seen"),
            }
        ),
        "Watching": obj({"categories": array(ref("WatchedCategory")), "threads": array(ref("WatchedThread"))}),
    },
)
