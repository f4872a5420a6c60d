"""Discovery: WebFinger (RFC 7033) for members, categories and the instance actor; NodeInfo 2.1 and 2.0;
host-meta (XRD and JSON) pointing at WebFinger for the software that still starts there.

Members' names and categories' slugs share one namespace, so `acct:NAME@host` names one actor; the
instance actor's name is the host itself. Private categories are not discoverable.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from datetime import timedelta
from typing import Any
from xml.sax.saxutils import quoteattr

from sqlalchemy import case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from activitypub.actors import TYPES
from activitypub.subjects import get_instance_actor
from forum import __version__
from forum.models import Actor, Category, InstanceSetting, Member, Post
from forum.models.base import utcnow
from forum.web.base import site_info
from forum.web.context import ForumContext, forum_context

JRD = "application/jrd+json"
NODEINFO_SCHEMA = "http://nodeinfo.diaspora.software/ns/schema/{version}"
PROFILE_PAGE = "http://webfinger.net/rel/profile-page"
AS_TYPE = "https://www.w3.org/ns/activitystreams#type"
# FEP-2677: where a peer finds the instance actor without guessing its address.
APPLICATION_REL = "https://www.w3.org/ns/activitystreams#Application"
MAX_RESOURCE = 2048
# An instance setting the concierge's registration modes may write; absent, registration is open.
REGISTRATION_MODE_KEY = "registration_mode"
CORS = {"Access-Control-Allow-Origin": "*"}


async def webfinger(request: Request) -> Response:
    forum = forum_context(request)
    resource = request.query_params.get("resource", "").strip()
    if not resource or len(resource) > MAX_RESOURCE:
        return _error(400, "Give the account to look up as ?resource=acct:NAME@HOST or an actor's URL.")
    if resource.lower().startswith(("http://", "https://")):
        actor = await _actor_by_url(forum, resource)
    else:
        handle = resource[5:] if resource[:5].lower() == "acct:" else resource
        name, at, host = handle.removeprefix("@").rpartition("@")
        if not at or not name or not host or "@" in name:
            return _error(400, "A resource names an account as acct:NAME@HOST.")
        if host.lower() != forum.settings.host.lower():
            return _error(404, "That account is not on this server.")
        actor = await _actor_by_name(forum, name)
    if actor is None:
        return _error(404, "No one is known by that name here.")
    url = actor.url or actor.ap_id
    document = {
        "subject": f"acct:{actor.username}@{forum.settings.host}",
        "aliases": list(dict.fromkeys([actor.ap_id, url])),
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": actor.ap_id,
             "properties": {AS_TYPE: TYPES[actor.kind]}},
            {"rel": PROFILE_PAGE, "type": "text/html", "href": url},
        ],
    }  # fmt: skip
    return _json(document, JRD)


async def nodeinfo_links(request: Request) -> Response:
    base = forum_context(request).settings.base_url
    links = [
        {"rel": NODEINFO_SCHEMA.format(version=version), "href": f"{base}/nodeinfo/{version}"}
        for version in ("2.1", "2.0")
    ]
    links.append({"rel": APPLICATION_REL, "href": f"{base}/actor"})
    return _json({"links": links}, "application/json")


async def nodeinfo(request: Request) -> Response:
    version = request.path_params["version"]
    if version not in ("2.0", "2.1"):
        return _error(404, "This server speaks NodeInfo 2.0 and 2.1.")
    forum = forum_context(request)
    site = await site_info(forum)
    async with forum.read() as session:
        usage = await _usage(session)
        mode = await session.scalar(select(InstanceSetting.value).where(InstanceSetting.key == REGISTRATION_MODE_KEY))
    software: dict[str, Any] = {"name": "jardin", "version": __version__}
    if version == "2.1":
        software.update(_project_urls())
    document = {
        "version": version,
        "software": software,
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": mode in (None, "open"),
        "usage": usage,
        "metadata": {"nodeName": site.name, "nodeDescription": site.description},
    }
    return _json(document, f'application/json; profile="{NODEINFO_SCHEMA.format(version=version)}#"')


async def host_meta(request: Request) -> Response:
    template = f"{forum_context(request).settings.base_url}/.well-known/webfinger?resource={{uri}}"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" type="application/jrd+json" template={quoteattr(template)}/>\n'
        "</XRD>\n"
    )
    return Response(body, media_type="application/xrd+xml", headers=CORS)


async def host_meta_json(request: Request) -> Response:
    template = f"{forum_context(request).settings.base_url}/.well-known/webfinger?resource={{uri}}"
    return _json({"links": [{"rel": "lrdd", "type": JRD, "template": template}]}, "application/json")


async def _actor_by_name(forum: ForumContext, name: str) -> Actor | None:
    if name.lower() == forum.settings.host.lower():
        return await get_instance_actor(forum)
    async with forum.read() as session:
        row = (
            await session.execute(
                select(Actor, Category.private)
                .outerjoin(Category, Category.actor_id == Actor.id)
                .where(Actor.username_key == name.lower(), Actor.domain == "", Actor.local.is_(True))
            )
        ).first()
    return None if row is None or row[1] else row[0]


async def _actor_by_url(forum: ForumContext, url: str) -> Actor | None:
    if url == f"{forum.settings.base_url}/actor":
        return await get_instance_actor(forum)
    async with forum.read() as session:
        row = (
            await session.execute(
                select(Actor, Category.private)
                .outerjoin(Category, Category.actor_id == Actor.id)
                .where(Actor.ap_id == url, Actor.local.is_(True))
            )
        ).first()
    return None if row is None or row[1] else row[0]


async def _usage(session: AsyncSession) -> dict[str, Any]:
    """Local members (active: logged in or posted within the period) and local, undeleted threads and replies."""
    now = utcnow()

    def active_since(days: int) -> Any:
        since = now - timedelta(days=days)
        posted = exists().where(Post.author_id == Member.actor_id, Post.created_at >= since)
        return select(func.count(Member.id)).where(or_(Member.last_login_at >= since, posted)).scalar_subquery()

    live = (Post.local.is_(True), Post.deleted_at.is_(None), Post.removed_at.is_(None))
    threads = select(func.count(case((Post.position == 1, 1)))).where(*live).scalar_subquery()
    replies = select(func.count(case((Post.position > 1, 1)))).where(*live).scalar_subquery()
    members = select(func.count(Member.id)).scalar_subquery()
    row = (await session.execute(select(members, active_since(30), active_since(180), threads, replies))).one()
    total, month, halfyear, local_posts, local_comments = (int(value or 0) for value in row)
    return {
        "users": {"total": total, "activeMonth": month, "activeHalfyear": halfyear},
        "localPosts": local_posts,
        "localComments": local_comments,
    }


@functools.cache
def _project_urls() -> dict[str, str]:
    """`repository` and `homepage` from the installed package's Project-URLs, when pyproject names them."""
    try:
        metadata = importlib.metadata.metadata("jardin")
    except importlib.metadata.PackageNotFoundError:
        return {}
    found: dict[str, str] = {}
    for entry in metadata.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        key = label.strip().lower()
        if key in ("repository", "source", "homepage") and url.strip():
            found.setdefault("homepage" if key == "homepage" else "repository", url.strip())
    return found


def _json(document: dict[str, Any], media_type: str, status: int = 200) -> Response:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=media_type, headers=CORS)


def _error(status: int, detail: str) -> Response:
    title = {400: "Bad Request", 404: "Not Found"}[status]
    problem = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return _json(problem, "application/problem+json", status)


routes = [
    Route("/.well-known/webfinger", webfinger, name="webfinger"),
    Route("/.well-known/nodeinfo", nodeinfo_links, name="nodeinfo_links"),
    Route("/nodeinfo/{version:str}", nodeinfo, name="nodeinfo"),
    Route("/.well-known/host-meta", host_meta, name="host_meta"),
    Route("/.well-known/host-meta.json", host_meta_json, name="host_meta_json"),
]
