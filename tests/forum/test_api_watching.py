"""The watching calls of API v1: watch and stop watching a thread, list what one watches, as documented."""

from __future__ import annotations

from httpx import AsyncClient

from forum.config import Settings
from tests.factories import make_category
from tests.forum.test_api import PROBLEM, auth, member_token, start_thread
from tests.forum.test_api_openapi import conforms, openapi


async def test_watch_a_thread_list_it_and_count_what_is_new(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice, bob = await member_token(settings, "alice"), await member_token(settings, "bob")
    thread = await start_thread(client, alice)
    watch = f"/api/v1/threads/{thread['id']}/watch"

    assert (await client.put(watch, headers=auth(bob))).status_code == 204
    assert (await client.put(watch, headers=auth(bob))).status_code == 204  # twice is one watch
    followed = await client.post("/api/v1/follows", json={"target": "general"}, headers=auth(bob))
    assert followed.status_code == 201, followed.text
    await client.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "new"}, headers=auth(alice))

    listed = await client.get("/api/v1/watching", headers=auth(bob))
    assert listed.status_code == 200
    body = listed.json()
    assert [(t["id"], t["post_count"], t["unread"]) for t in body["threads"]] == [(thread["id"], 2, 1)]
    assert body["threads"][0]["category"]["slug"] == "general"
    assert [(c["slug"], c["state"]) for c in body["categories"]] == [("general", "accepted")]

    document = await openapi(client)
    schema = document["paths"]["/watching"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert conforms(document, body, schema) == []

    # Reading the thread in the API does not mark it read: only the member's page does.
    await client.get(f"/api/v1/threads/{thread['id']}", headers=auth(bob))
    assert (await client.get("/api/v1/watching", headers=auth(bob))).json()["threads"][0]["unread"] == 1

    assert (await client.delete(watch, headers=auth(bob))).status_code == 204
    assert (await client.delete(watch, headers=auth(bob))).status_code == 204
    assert (await client.get("/api/v1/watching", headers=auth(bob))).json()["threads"] == []


async def test_watching_needs_a_token_and_a_thread_one_can_see(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await make_category(settings, "backroom", "Backroom", private=True)
    token = await member_token(settings, "carol")
    admin = await member_token(settings, "gaia", role="admin")
    hidden = await start_thread(client, admin, "backroom")
    refused = await client.put(f"/api/v1/threads/{hidden['id']}/watch", headers=auth(token))
    assert refused.status_code == 404  # a private category's thread looks missing
    anonymous = await client.put("/api/v1/threads/1/watch")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM
    assert (await client.get("/api/v1/watching")).status_code == 401
    missing = await client.put("/api/v1/threads/999/watch", headers=auth(token))
    assert missing.status_code == 404
    assert missing.json()["detail"] == "No such thread."
    assert (await client.put("/api/v1/threads/x/watch", headers=auth(token))).status_code == 404
    assert (await client.put("/api/v1/threads/99999999999/watch", headers=auth(token))).status_code == 404
