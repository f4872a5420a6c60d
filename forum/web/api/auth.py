"""Who is calling the API: the member behind an `Authorization: Bearer TOKEN` header, or a guest.

The token is looked up on every request (a revoked token stops working at once); its `last_used_at`
is written at most once a minute, so reading costs no write. Browser session cookies are not
accepted here: the API is exempt from the Origin check, so a cookie would open it to cross-site use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import OperationalError
from starlette.requests import Request

from forum.errors import NotAuthenticated
from forum.models import ApiToken
from forum.models.base import utcnow
from forum.permissions import GUEST, Viewer
from forum.services import accounts
from forum.web.base import viewer_for_member
from forum.web.context import ForumContext, forum_context

TOUCH_INTERVAL = timedelta(minutes=1)
log = logging.getLogger("forum.api")
MAX_TOKEN_LENGTH = 200


class InvalidToken(NotAuthenticated):
    """A token was sent but names no live token (unknown, revoked, malformed)."""


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class Caller:
    viewer: Viewer
    token: TokenInfo | None

    def require_member(self) -> None:
        if not self.viewer.is_member:
            raise NotAuthenticated(
                "This call needs a personal access token: send “Authorization: Bearer TOKEN” "
                "(create one in your settings page, or with “forum token create NAME”)."
            )


ANONYMOUS = Caller(GUEST, None)


async def authenticate(request: Request) -> Caller:
    header = request.headers.get("authorization")
    if header is None:
        return ANONYMOUS
    scheme, _, plain = header.strip().partition(" ")
    plain = plain.strip()
    if scheme.lower() != "bearer":
        raise InvalidToken("Only bearer tokens are accepted: send “Authorization: Bearer TOKEN”.")
    if not plain or len(plain) > MAX_TOKEN_LENGTH:
        raise InvalidToken("The bearer token is empty or malformed.")
    forum = forum_context(request)
    async with forum.read() as session:
        found = await accounts.member_for_token(session, plain)
        if found is None:
            raise InvalidToken("This token is unknown or was revoked.")
        member, token = found
        viewer = await viewer_for_member(session, member)
    now = utcnow()
    stale = token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL
    if stale:
        await _touch(forum, token.id, now)
    info = TokenInfo(token.id, token.name, token.prefix, token.created_at, now if stale else token.last_used_at)
    return Caller(viewer, info)


async def _touch(forum: ForumContext, token_id: int, now: datetime) -> None:
    """Record the token's use, in its own short transaction; conditional, so concurrent requests
    write once. It is bookkeeping: a busy database must not fail the request it belongs to."""
    try:
        async with forum.sessions() as session, session.begin():
            await session.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id)
                .where(or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - TOUCH_INTERVAL))
                .values(last_used_at=now)
            )
    except OperationalError:
        log.warning("could not record the use of API token %d", token_id, exc_info=True)
