"""The vote buttons under each post: a form per post (no script needed), answered by a redirect back to it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum.errors import N_, InvalidInput
from forum.i18n import gettext_ as _
from forum.services import reading, votes
from forum.web.base import PageState, check_csrf, page_state, read_form, redirect
from forum.web.context import forum_context


async def vote(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    post_id = request.path_params["post_id"]
    if not state.viewer.is_member:
        return redirect(f"/login?next=/p/{post_id}")
    form = await read_form(request)
    check_csrf(request, state, form)
    raw = form.get("value", "")
    if raw not in ("1", "0", "-1"):
        raise InvalidInput(N_("A vote is 1 (up), -1 (down) or 0 (none)."), field="value")
    limits = forum.settings.rate_limits
    message = _("You are voting too fast. Wait a little and try again.")
    forum.limiter.hit("vote", f"member:{state.viewer.username}", limits.vote_per_account, limits.vote_window, message)
    async with forum.write() as session:
        await votes.vote(session, forum.bus, state.viewer, post_id, int(raw))
    return redirect(f"/p/{post_id}")


async def viewer_votes(request: Request, state: PageState, view: reading.ThreadPage) -> dict[int, int]:
    """The member's votes on this page's posts; no query at all on a page nobody voted on."""
    if state.viewer.actor_id is None:
        return {}
    voted = [post.id for post in view.posts if post.upvotes or post.downvotes]
    if not voted:
        return {}
    async with forum_context(request).read() as session:
        return await votes.my_votes(session, state.viewer.actor_id, voted)


routes = [Route("/p/{post_id:id}/vote", vote, methods=["POST"], name="vote")]
