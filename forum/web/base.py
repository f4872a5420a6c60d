"""Helpers every page route uses: who is asking, in which language and theme, forms, CSRF, rendering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from forum import i18n
from forum.errors import N_, Forbidden, InvalidInput
from forum.models import LoginSession, Member, RoleGrant
from forum.models.base import MAX_ID, is_id, utcnow
from forum.permissions import GUEST, Viewer
from forum.services import accounts
from forum.services.site import SiteInfo, load_site
from forum.web.context import ForumContext, forum_context
from forum.web.security import (
    CSRF_COOKIE,
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    client_address,
    csrf_token,
    csrf_valid,
    new_csrf_secret,
)

FORM_TYPES = ("application/x-www-form-urlencoded",)


class IdConvertor(Convertor[int]):
    """`{name:id}` in a route path: a record id. Starlette's `int` takes any number of digits, and an
    id the database cannot hold made the query fail (a 500) instead of finding nothing (a 404)."""

    regex = "[0-9]{1,10}"

    def convert(self, value: str) -> int:
        number = int(value)
        return number if number <= MAX_ID else 0  # ids start at 1: 0 names no row

    def to_string(self, value: int) -> str:
        return str(value)


# Registered here, before the route modules (which import this one) declare `{…:id}` paths.
register_url_convertor("id", IdConvertor())


def parse_id(raw: str | None) -> int | None:
    """An id typed into a form or a query string, or None when it cannot name a row."""
    return int(raw) if raw and is_id(raw) else None


@dataclass(frozen=True)
class PageState:
    """What a page render knows about its request, worked out once."""

    viewer: Viewer
    member: Member | None
    session_id: str | None
    language: str
    theme: str
    site: SiteInfo
    csrf_secret: str
    new_csrf_cookie: bool


def _session_serializer(context: ForumContext) -> URLSafeSerializer:
    return URLSafeSerializer(context.settings.secret_key, salt="session")


def session_cookie_value(context: ForumContext, session_id: str) -> str:
    return _session_serializer(context).dumps(session_id)


def session_id_from(request: Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        value = _session_serializer(forum_context(request)).loads(raw)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


async def current_viewer(request: Request) -> tuple[Viewer, str | None]:
    """The member behind the session cookie (cached per process, dropped on logout everywhere)."""
    if "viewer" in request.state._state:
        return request.state.viewer, request.state.session_id
    context = forum_context(request)
    session_id = session_id_from(request)
    viewer = GUEST
    if session_id is not None:
        cached = context.viewers.get(session_id)
        # The cache keeps the session's end with the viewer: a cached session still expires on time.
        if cached is not None and cached[1] > utcnow():
            viewer = cached[0]
        else:
            async with context.read() as session:
                member = await accounts.member_for_session(session, session_id)
                expires_at = await session.scalar(select(LoginSession.expires_at).where(LoginSession.id == session_id))
                if member is None or expires_at is None:
                    session_id = None
                else:
                    viewer = await viewer_for_member(session, member)
                    context.viewers.put(session_id, (viewer, expires_at), (f"s:{session_id}", f"m:{member.id}"))
    request.state.viewer, request.state.session_id = viewer, session_id
    return viewer, session_id


async def viewer_for_member(session: Any, member: Member) -> Viewer:
    grants = (await session.execute(
        select(RoleGrant.role, RoleGrant.category_id).where(RoleGrant.member_id == member.id)
    )).all()  # fmt: skip
    return Viewer(
        member_id=member.id,
        actor_id=member.actor_id,
        username=member.actor.username,
        is_admin=member.is_admin,
        grants=frozenset((role, category) for role, category in grants),
        language=member.language,
        theme=member.theme,
    )


async def site_info(context: ForumContext) -> SiteInfo:
    site = context.site_cache.get("site")
    if site is None:
        async with context.read() as session:
            site = await load_site(session, context.settings.theme)
        context.site_cache.put("site", site, ("site",))
    return site


def request_language(request: Request, viewer: Viewer) -> str:
    chosen = viewer.language or request.cookies.get(LANGUAGE_COOKIE)
    if chosen in i18n.LANGUAGES:
        return chosen
    return i18n.negotiate(request.headers.get("accept-language"))


async def page_state(request: Request) -> PageState:
    context = forum_context(request)
    viewer, session_id = await current_viewer(request)
    site = await site_info(context)
    language = request_language(request, viewer)
    context.catalogs.activate(language)
    theme = viewer.theme if viewer.theme in context.templates.themes else site.theme
    if theme not in context.templates.themes:
        theme = "default"
    csrf_secret = request.cookies.get(CSRF_COOKIE) or ""
    new_cookie = not csrf_secret
    if new_cookie:
        csrf_secret = new_csrf_secret()
    return PageState(
        viewer=viewer, member=None, session_id=session_id, language=language, theme=theme, site=site,
        csrf_secret=csrf_secret, new_csrf_cookie=new_cookie,
    )  # fmt: skip


def render(
    request: Request, state: PageState, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    forum = forum_context(request)
    body = forum.templates.render(state.theme, template, {**template_globals(request, state), **context})
    response = HTMLResponse(body, status_code=status_code)
    if state.new_csrf_cookie and "csrf_token" in body:
        set_csrf_cookie(response, forum, state.csrf_secret)
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["Vary"] = "Cookie, Accept-Language"
    return response


def template_globals(request: Request, state: PageState) -> dict[str, Any]:
    return {
        "request_path": request.url.path,
        "viewer": state.viewer,
        "site": state.site,
        "language": state.language,
        "languages": i18n.LANGUAGES,
        "csrf_token": csrf_token(forum_context(request).settings.secret_key, state.csrf_secret),
        "themes": forum_context(request).templates.themes,
    }


def set_csrf_cookie(response: Response, forum: ForumContext, secret: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, secret, httponly=True, samesite="lax", secure=forum.settings.secure_cookies, path="/",
        max_age=60 * 60 * 24 * 365,
    )  # fmt: skip


async def read_form(request: Request) -> dict[str, str]:
    """The posted form, decoded strictly: invalid UTF-8 is refused, not silently replaced."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORM_TYPES:
        raise InvalidInput(N_("Send the form as application/x-www-form-urlencoded."))
    body = await request.body()
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidInput(N_("The form holds text that is not valid UTF-8.")) from error
    form: dict[str, str] = {}
    for key, value in pairs:
        if "\x00" in value:
            raise InvalidInput(N_("The form holds a NUL character."))
        form.setdefault(key, value)
    return form


def check_csrf(request: Request, state: PageState, form: dict[str, str]) -> None:
    forum = forum_context(request)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not csrf_valid(forum.settings.secret_key, cookie, form.get("csrf_token")):
        raise Forbidden(i18n.gettext_("The form expired or came from another site. Reload the page and try again."))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def address(request: Request) -> str:
    return client_address(request, forum_context(request).settings.trusted_proxies)


def safe_next(url: str | None) -> str:
    """A local path to go back to after a form; anything else becomes the home page."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return "/"
