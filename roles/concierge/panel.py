"""`/concierge`: the concierge's panel, one page of sections, each with its own buttons.

Follow requests are its first section. A section is a loader of what it shows (listed in `SECTIONS`),
a `<section>` of concierge.html and the POST routes of its buttons; reports, bans and registration
join the same way. Buttons post to their own address and come back with a notice (POST-redirect-GET).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum.errors import ForumError
from forum.i18n import gettext_ as _
from forum.permissions import Viewer
from forum.web.base import PageState, check_csrf, page_state, read_form, redirect, render
from forum.web.context import forum_context
from roles.concierge import followers

PANEL = "/concierge"
# What a button did, shown once after its redirect (the template words each one).
NOTICES = frozenset({"follow-accepted", "follow-rejected"})

Section = Callable[[AsyncSession, Viewer], Awaitable[dict[str, Any]]]


async def panel(request: Request) -> Response:
    state = await page_state(request)
    if not state.viewer.is_member:
        return redirect(f"/login?next={PANEL}")
    followers.require_concierge(state.viewer)
    notice = request.query_params.get("done")
    return await _render(request, state, {"notice": notice if notice in NOTICES else None})


async def accept_follow_request(request: Request) -> Response:
    return await _follow_answer(request, accept=True)


async def reject_follow_request(request: Request) -> Response:
    return await _follow_answer(request, accept=False)


async def _follow_answer(request: Request, *, accept: bool) -> Response:
    state = await page_state(request)
    if not state.viewer.is_member:
        return redirect(f"/login?next={PANEL}")
    followers.require_concierge(state.viewer)
    forum = forum_context(request)
    try:
        check_csrf(request, state, await read_form(request))
        async with forum.write() as session:
            answer = followers.accept_request if accept else followers.reject_request
            await answer(session, forum.bus, state.viewer, request.path_params["follow_id"])
    except ForumError as error:
        # The panel again, saying why (an answered request, another category's).
        return await _render(request, state, {"error": error.localized(_)}, error.status)
    done = "follow-accepted" if accept else "follow-rejected"
    return redirect(f"{PANEL}?done={done}#follow-requests")


async def _follow_requests(session: AsyncSession, viewer: Viewer) -> dict[str, Any]:
    return {"follow_requests": await followers.pending_requests(session, viewer)}


SECTIONS: tuple[Section, ...] = (_follow_requests,)


async def _render(request: Request, state: PageState, context: dict[str, Any], status: int = 200) -> Response:
    async with forum_context(request).read() as session:
        for section in SECTIONS:
            context.update(await section(session, state.viewer))
    return render(request, state, "concierge.html", context, status)


routes = [
    Route(PANEL, panel, methods=["GET"], name="concierge"),
    Route(f"{PANEL}/follow-requests/{{follow_id:id}}/accept", accept_follow_request, methods=["POST"]),
    Route(f"{PANEL}/follow-requests/{{follow_id:id}}/reject", reject_follow_request, methods=["POST"]),
]
