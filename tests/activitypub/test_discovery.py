"""Discovery through the real app: WebFinger as Mastodon and Lemmy ask it, NodeInfo as crawlers read it, host-meta."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import update

from forum.app import create_app
from forum.config import Settings
from forum.models import InstanceSetting, Member, Post, Thread
from forum.models.base import utcnow
from tests.activitypub.test_documents import REMOTE, database, member, remote_actor, reply, start_thread
from tests.conftest import BASE_URL
from tests.factories import make_category

HOST = "127.0.0.1:8000"
SELF_TYPE = "https://www.w3.org/ns/activitystreams#type"
NODEINFO_21 = "http://nodeinfo.diaspora.software/ns/schema/2.1"
NODEINFO_20 = "http://nodeinfo.diaspora.software/ns/schema/2.0"


async def finger(client: AsyncClient, resource: str | None, status: int = 200) -> dict[str, Any]:
    params = {} if resource is None else {"resource": resource}
    response = await client.get("/.well-known/webfinger", params=params)
    assert response.status_code == status, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    body: dict[str, Any] = response.json()
    if status == 200:
        assert response.headers["content-type"] == "application/jrd+json"
    return body


def self_link(jrd: dict[str, Any]) -> dict[str, Any]:
    links: list[dict[str, Any]] = [link for link in jrd["links"] if link["rel"] == "self"]
    assert len(links) == 1 and links[0]["type"] == "application/activity+json"
    return links[0]


async def test_webfinger_finds_a_member(client: AsyncClient, settings: Settings) -> None:
    await member(settings, "alice")
    jrd = await finger(client, f"acct:alice@{HOST}")
    actor = f"{BASE_URL}/u/alice"
    assert jrd["subject"] == f"acct:alice@{HOST}"
    assert jrd["aliases"][0] == actor
    link = self_link(jrd)
    assert link["href"] == actor and link["properties"][SELF_TYPE] == "Person"
    [profile] = [link for link in jrd["links"] if link["rel"] == "http://webfinger.net/rel/profile-page"]
    assert profile == {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": actor}
    # Names are matched case-insensitively; the subject keeps the name as registered.
    assert (await finger(client, f"acct:ALICE@{HOST}"))["subject"] == f"acct:alice@{HOST}"
    # The self link is what a peer then fetches.
    person = await client.get(link["href"], headers={"Accept": link["type"]})
    assert person.json()["type"] == "Person"


async def test_webfinger_host_is_case_insensitive(settings: Settings) -> None:
    named = settings.with_changes(base_url="https://Forum.Example")
    await member(named, "alice")
    app = create_app(named, run_worker=False)
    async with app.router.lifespan_context(app), AsyncClient(transport=ASGITransport(app=app)) as http:
        response = await http.get("https://forum.example/.well-known/webfinger?resource=acct:alice@FORUM.example")
    assert response.status_code == 200
    assert response.json()["subject"] == "acct:alice@Forum.Example"


async def test_webfinger_finds_a_category_and_the_instance(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    group = await finger(client, f"acct:general@{HOST}")
    assert self_link(group)["href"] == f"{BASE_URL}/c/general"
    assert self_link(group)["properties"][SELF_TYPE] == "Group"
    instance = await finger(client, f"acct:{HOST}@{HOST}")
    assert instance["subject"] == f"acct:{HOST}@{HOST}"
    assert self_link(instance)["href"] == f"{BASE_URL}/actor"
    assert self_link(instance)["properties"][SELF_TYPE] == "Application"


async def test_webfinger_by_actor_url(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await member(settings, "alice")
    assert (await finger(client, f"{BASE_URL}/u/alice"))["subject"] == f"acct:alice@{HOST}"
    assert (await finger(client, f"{BASE_URL}/c/general"))["subject"] == f"acct:general@{HOST}"
    assert (await finger(client, f"{BASE_URL}/actor"))["subject"] == f"acct:{HOST}@{HOST}"
    await finger(client, f"{BASE_URL}/u/nobody", 404)
    await finger(client, f"{REMOTE}/u/alice", 404)


async def test_webfinger_refuses_what_is_not_ours(client: AsyncClient, settings: Settings) -> None:
    await member(settings, "alice")
    await make_category(settings, "backroom", "Staff", private=True)
    async with database(settings) as session:
        session.add(remote_actor("bob"))
    for resource in ("acct:alice@remote.example", "acct:bob@remote.example", f"acct:nobody@{HOST}",
                     f"acct:backroom@{HOST}", f"{BASE_URL}/c/backroom", "acct:alice@127.0.0.1:9999"):  # fmt: skip
        problem = await finger(client, resource, 404)
        assert problem["status"] == 404, resource


@pytest.mark.parametrize("resource", [None, "", "acct:", "acct:alice", f"acct:@{HOST}", "acct:alice@", "x" * 3000])
async def test_webfinger_malformed_resource_is_400(client: AsyncClient, resource: str | None) -> None:
    problem = await finger(client, resource, 400)
    assert problem["status"] == 400 and problem["detail"]


async def test_nodeinfo_discovery_and_document(client: AsyncClient, settings: Settings) -> None:
    links = (await client.get("/.well-known/nodeinfo")).json()["links"]
    by_rel = {link["rel"]: link["href"] for link in links}
    assert by_rel[NODEINFO_21] == f"{BASE_URL}/nodeinfo/2.1"
    assert by_rel[NODEINFO_20] == f"{BASE_URL}/nodeinfo/2.0"
    response = await client.get("/nodeinfo/2.1")
    assert response.status_code == 200
    assert response.headers["content-type"] == f'application/json; profile="{NODEINFO_21}#"'
    document = response.json()
    assert document["version"] == "2.1"
    assert document["software"]["name"] == "jardin" and document["software"]["version"]
    assert document["protocols"] == ["activitypub"]
    assert document["services"] == {"inbound": [], "outbound": []}
    assert document["openRegistrations"] is True
    assert document["metadata"]["nodeName"] == "Jardin"
    older = (await client.get("/nodeinfo/2.0")).json()
    assert older["version"] == "2.0" and set(older["software"]) == {"name", "version"}
    assert (await client.get("/nodeinfo/3.0")).status_code == 404


async def test_nodeinfo_counts_local_members_and_posts(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    before = await usage(client)
    assert before == {"users": {"total": 0, "activeMonth": 0, "activeHalfyear": 0}, "localPosts": 0,
                      "localComments": 0}  # fmt: skip
    alice = await member(settings, "alice")
    await member(settings, "bob")
    thread_id = await start_thread(settings, alice, "general")
    await reply(settings, alice, thread_id, "One")
    gone = await reply(settings, alice, thread_id, "Two")
    async with database(settings) as session:
        await session.execute(update(Post).where(Post.id == gone).values(deleted_at=utcnow()))
        # A remote member's reply is not ours to count.
        bob = remote_actor("bob")
        session.add(bob)
        await session.flush()
        session.add(Post(thread_id=thread_id, position=4, author_id=bob.id, ap_id=f"{REMOTE}/comment/1", local=False,
                         source="x", html="<p>x</p>"))  # fmt: skip
        await session.execute(update(Thread).where(Thread.id == thread_id).values(post_count=4))
    after = await usage(client)
    # Bob never posted nor logged in: a member, not an active one.
    assert after == {"users": {"total": 2, "activeMonth": 1, "activeHalfyear": 1}, "localPosts": 1,
                     "localComments": 1}  # fmt: skip
    async with database(settings) as session:
        await session.execute(update(Member).values(last_login_at=utcnow()))
    assert (await usage(client))["users"]["activeMonth"] == 2


async def test_nodeinfo_follows_the_registration_mode(client: AsyncClient, settings: Settings) -> None:
    async with database(settings) as session:
        session.add(InstanceSetting(key="registration_mode", value="invite"))
    assert (await client.get("/nodeinfo/2.1")).json()["openRegistrations"] is False


async def test_host_meta_points_at_webfinger(client: AsyncClient) -> None:
    template = f"{BASE_URL}/.well-known/webfinger?resource={{uri}}"
    xrd = await client.get("/.well-known/host-meta")
    assert xrd.status_code == 200 and xrd.headers["content-type"].startswith("application/xrd+xml")
    root = ET.fromstring(xrd.text)
    [link] = root.findall("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")
    assert link.get("rel") == "lrdd" and link.get("template") == template
    as_json = await client.get("/.well-known/host-meta.json")
    assert as_json.json()["links"][0] == {"rel": "lrdd", "type": "application/jrd+json", "template": template}


async def usage(client: AsyncClient) -> dict[str, Any]:
    response: Response = await client.get("/nodeinfo/2.1")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()["usage"]
    return found
