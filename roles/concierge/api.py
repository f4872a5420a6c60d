"""The concierge's JSON API v1 calls (`/api/v1/follow-requests`…) and their part of the OpenAPI document.

The same service and role checks as the panel; mounted, and its `SECTION` registered, by forum.app.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum.models import Category
from forum.services import categories as category_service
from forum.web.api import serializers
from forum.web.api.auth import Caller
from forum.web.api.bodies import checked_reference, path_id
from forum.web.api.endpoint import endpoint, json_response
from forum.web.api.openapi import Section, ok, operation, path_param, query_param
from forum.web.api.schemas import Json, integer, obj, ref, string
from forum.web.context import forum_context
from roles.concierge import followers
from roles.concierge.followers import FollowRequest

PREFIX = "/api/v1"
TAG = "concierge"


@endpoint
async def list_follow_requests(request: Request, caller: Caller) -> Response:
    """Pending requests of the categories the caller tends, oldest first; `?category=` keeps one category's."""
    caller.require_member()
    followers.require_concierge(caller.viewer)
    forum = forum_context(request)
    reference = request.query_params.get("category")
    async with forum.read() as session:
        category: Category | None = None
        if reference is not None:
            category = await category_service.get_category(
                session, caller.viewer, checked_reference(reference, "category")
            )
        found = await followers.pending_requests(session, caller.viewer, category)
    return json_response([follow_request(r, forum.settings.base_url) for r in found])


@endpoint
async def accept_follow_request(request: Request, caller: Caller) -> Response:
    caller.require_member()
    forum = forum_context(request)
    follow_id = path_id(request, "follow_id", "follow request")
    async with forum.write() as session:
        accepted = await followers.accept_request(session, forum.bus, caller.viewer, follow_id)
    return json_response(follow_request(accepted, forum.settings.base_url, "accepted"))


@endpoint
async def reject_follow_request(request: Request, caller: Caller) -> Response:
    caller.require_member()
    forum = forum_context(request)
    follow_id = path_id(request, "follow_id", "follow request")
    async with forum.write() as session:
        await followers.reject_request(session, forum.bus, caller.viewer, follow_id)
    return Response(status_code=204)


def follow_request(found: FollowRequest, base_url: str, state: str = "pending") -> Json:
    follower = found.follower
    return {
        "id": found.id,
        "state": state,
        "category": serializers.category_ref(found.category, base_url),
        "follower": {
            "ap_id": follower.ap_id,
            "handle": f"{follower.username}@{follower.domain}",
            "name": follower.shown_name,
            "domain": follower.domain,
        },
        "requested_at": serializers.timestamp(found.requested_at),
    }


routes = [
    Route(f"{PREFIX}/follow-requests", list_follow_requests, methods=["GET"]),
    Route(f"{PREFIX}/follow-requests/{{follow_id}}/accept", accept_follow_request, methods=["POST"]),
    Route(f"{PREFIX}/follow-requests/{{follow_id}}/reject", reject_follow_request, methods=["POST"]),
]

_FOLLOW_REQUEST = obj(
    {
        "id": integer("the request's id, for accept and reject"),
        "state": {"type": "string", "enum": ["pending", "accepted"]},
        "category": ref("CategoryRef"),
        "follower": obj(
            {
                "ap_id": string("ActivityPub id of the actor asking", "uri"),
                "handle": string("`name@host`"),
                "name": string("display name, or the username"),
                "domain": string("its server"),
            }
        ),
        "requested_at": string("RFC 3339, UTC", "date-time"),
    },
    description="A remote actor waiting to follow a category that approves its followers.",
)
_FOLLOW_ID = path_param("follow_id", "the follow request's id", integer())
_WHO = "A concierge of the request's category (one named for it or instance-wide) or an admin; others get 403."

SECTION = Section(
    tag=TAG,
    schemas={"FollowRequest": _FOLLOW_REQUEST},
    paths={
        "/follow-requests": {
            "get": operation(
                "listFollowRequests",
                "Follow requests waiting for you, oldest first",
                TAG,
                ok("Pending requests of the categories you tend", {"type": "array", "items": ref("FollowRequest")}),
                parameters=[query_param("category", "only this category's (its id or slug)")],
                auth=True,
                description=_WHO,
            )
        },
        "/follow-requests/{follow_id}/accept": {
            "parameters": [_FOLLOW_ID],
            "post": operation(
                "acceptFollowRequest",
                "Accept a follow request: the follower gets the category's new threads",
                TAG,
                ok("The request, now `accepted`", ref("FollowRequest")),
                auth=True,
                description=f"{_WHO} A private category accepts nobody (403).",
            ),
        },
        "/follow-requests/{follow_id}/reject": {
            "parameters": [_FOLLOW_ID],
            "post": operation(
                "rejectFollowRequest",
                "Reject a follow request; the follower's server is told",
                TAG,
                {"204": {"description": "Rejected and forgotten"}},
                auth=True,
                description=_WHO,
            ),
        },
    },
)
