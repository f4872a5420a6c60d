"""Follow requests through API v1: who may list, accept and reject them, what the follower's server is
sent, and errors as problem+json; the answers match the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from forum.config import Settings
from tests.forum.test_api import auth, member_token, problem, start_thread
from tests.forum.test_api_openapi import conforms, openapi, resolve
from tests.roles.concierge.factories import (
    REMOTE,
    approving_category,
    follow_request,
    follow_state,
    grant,
    sent,
)

GENERAL_FOLLOW = f"https://{REMOTE}/follows/rémi-general"


async def _arrange(settings: Settings) -> int:
    """`general` approves followers, `other` too; rémi on remote.example waits to follow `general`."""
    await approving_category(settings, "general", "General")
    await approving_category(settings, "other", "Other")
    return await follow_request(settings, "general", "rémi")


async def _token_for(settings: Settings, who: str) -> str:
    """A token of a member holding `who`'s standing towards `general`."""
    if who == "admin":
        return await member_token(settings, "ada", role="admin")
    token = await member_token(settings, "cleo")
    if who == "concierge of general":
        await grant(settings, "cleo", "concierge", "general")
    elif who == "instance concierge":
        await grant(settings, "cleo", "concierge")
    elif who == "concierge of other":
        await grant(settings, "cleo", "concierge", "other")
    elif who == "gardener of general":
        await grant(settings, "cleo", "gardener", "general")
    return token


@pytest.mark.parametrize("who", ["concierge of general", "instance concierge", "admin"])
async def test_concierges_list_and_accept(client: AsyncClient, settings: Settings, who: str) -> None:
    follow_id = await _arrange(settings)
    token = await _token_for(settings, who)

    listed = await client.get("/api/v1/follow-requests", headers=auth(token))
    assert listed.status_code == 200, listed.text
    assert listed.headers["cache-control"] == "private, no-store"
    [request] = listed.json()
    assert request["id"] == follow_id and request["state"] == "pending"
    assert request["category"]["slug"] == "general"
    assert request["follower"] == {
        "ap_id": f"https://{REMOTE}/users/rémi",
        "handle": f"rémi@{REMOTE}",
        "name": "Rémi",
        "domain": REMOTE,
    }
    assert request["requested_at"].endswith("Z")
    by_slug = await client.get("/api/v1/follow-requests?category=general", headers=auth(token))
    by_id = await client.get(f"/api/v1/follow-requests?category={request['category']['id']}", headers=auth(token))
    assert by_slug.json() == by_id.json() == [request]

    accepted = await client.post(f"/api/v1/follow-requests/{follow_id}/accept", headers=auth(token))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {**request, "state": "accepted"}
    assert await follow_state(settings, follow_id) == "accepted"
    assert (await client.get("/api/v1/follow-requests", headers=auth(token))).json() == []

    # The follower's server is told, by the category's Group, naming the Follow it sent.
    [answer] = await sent(settings, "Accept")
    group = f"{settings.base_url}/c/general"
    assert answer.document["actor"] == group
    assert answer.document["to"] == [f"https://{REMOTE}/users/rémi"]
    assert answer.document["object"] == {
        "id": GENERAL_FOLLOW,
        "type": "Follow",
        "actor": f"https://{REMOTE}/users/rémi",
        "object": group,
    }
    assert answer.inboxes == [f"https://{REMOTE}/users/rémi/inbox"]


async def test_accepted_follower_gets_new_threads(client: AsyncClient, settings: Settings) -> None:
    follow_id = await _arrange(settings)
    token = await _token_for(settings, "concierge of general")
    await start_thread(client, token, title="Before")
    assert await _announced(settings) == []  # a pending follower hears nothing

    await client.post(f"/api/v1/follow-requests/{follow_id}/accept", headers=auth(token))
    await start_thread(client, token, title="After")
    assert await _announced(settings) == [("After", f"https://{REMOTE}/inbox")]


async def _announced(settings: Settings) -> list[tuple[str, str]]:
    """The new threads the Group announced, with the inboxes it queued them for."""
    return [
        (announce.document["object"].get("name"), inbox)
        for announce in await sent(settings, "Announce")
        for inbox in announce.inboxes
    ]


async def test_reject_forgets_the_request_and_tells_the_follower(client: AsyncClient, settings: Settings) -> None:
    follow_id = await _arrange(settings)
    token = await _token_for(settings, "concierge of general")

    rejected = await client.post(f"/api/v1/follow-requests/{follow_id}/reject", headers=auth(token))
    assert rejected.status_code == 204 and rejected.content == b""
    assert await follow_state(settings, follow_id) is None
    [answer] = await sent(settings, "Reject")
    assert answer.document["actor"] == f"{settings.base_url}/c/general"
    assert answer.document["object"] == {
        "id": GENERAL_FOLLOW,
        "type": "Follow",
        "actor": f"https://{REMOTE}/users/rémi",
        "object": f"{settings.base_url}/c/general",
    }
    assert answer.inboxes == [f"https://{REMOTE}/users/rémi/inbox"]
    assert await sent(settings, "Accept") == []

    await start_thread(client, token, title="After")
    assert await _announced(settings) == []
    again = await client.post(f"/api/v1/follow-requests/{follow_id}/reject", headers=auth(token))
    assert "No such follow request" in problem(again, 404)["detail"]


async def test_the_followers_count_peers_read_follows_each_answer(client: AsyncClient, settings: Settings) -> None:
    """The Group's followers collection is kept in the page cache, and read again after every follow answered."""
    first = await _arrange(settings)
    second = await follow_request(settings, "general", "sam")
    token = await _token_for(settings, "concierge of general")

    async def followers() -> int:
        response = await client.get("/c/general/followers", headers={"Accept": "application/activity+json"})
        assert response.status_code == 200, response.text
        return int(response.json()["totalItems"])

    assert [await followers(), await followers()] == [0, 0]
    accepted = await client.post(f"/api/v1/follow-requests/{first}/accept", headers=auth(token))
    assert accepted.status_code == 200, accepted.text
    assert [await followers(), await followers()] == [1, 1]
    rejected = await client.post(f"/api/v1/follow-requests/{second}/reject", headers=auth(token))
    assert rejected.status_code == 204, rejected.text
    assert await followers() == 1
    third = await follow_request(settings, "general", "tom")
    accepted = await client.post(f"/api/v1/follow-requests/{third}/accept", headers=auth(token))
    assert accepted.status_code == 200, accepted.text
    assert await followers() == 2


@pytest.mark.parametrize("who", ["member", "gardener of general", "concierge of other"])
async def test_others_are_refused(client: AsyncClient, settings: Settings, who: str) -> None:
    follow_id = await _arrange(settings)
    token = await _token_for(settings, who)

    listed = await client.get("/api/v1/follow-requests", headers=auth(token))
    if who == "concierge of other":
        assert listed.json() == []  # only the requests of the categories one tends
    else:
        assert "concierge" in problem(listed, 403)["detail"]
    problem(await client.get("/api/v1/follow-requests?category=general", headers=auth(token)), 403)
    for answer in ("accept", "reject"):
        refused = await client.post(f"/api/v1/follow-requests/{follow_id}/{answer}", headers=auth(token))
        assert "concierge" in problem(refused, 403)["detail"]
    assert await follow_state(settings, follow_id) == "pending"
    assert await sent(settings, "Accept") == await sent(settings, "Reject") == []


async def test_guests_are_asked_for_a_token(client: AsyncClient, settings: Settings) -> None:
    follow_id = await _arrange(settings)
    for response in (
        await client.get("/api/v1/follow-requests"),
        await client.post(f"/api/v1/follow-requests/{follow_id}/accept"),
    ):
        problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await follow_state(settings, follow_id) == "pending"


@pytest.mark.parametrize(
    "url",
    ["/follow-requests/999999/accept", "/follow-requests/0/reject", "/follow-requests/abc/accept",
     "/follow-requests/99999999999999999999/accept", "/follow-requests/%C2%B2/reject",
     "/follow-requests?category=nowhere", "/follow-requests?category=99999999999", "/follow-requests?category="],
)  # fmt: skip
async def test_bad_ids_are_404_problems(client: AsyncClient, settings: Settings, url: str) -> None:
    await _arrange(settings)
    token = await _token_for(settings, "instance concierge")
    method = "POST" if url.endswith(("accept", "reject")) else "GET"
    problem(await client.request(method, f"/api/v1{url}", headers=auth(token)), 404)


async def test_an_accepted_follow_is_no_request(client: AsyncClient, settings: Settings) -> None:
    follow_id = await _arrange(settings)
    token = await _token_for(settings, "admin")
    await client.post(f"/api/v1/follow-requests/{follow_id}/accept", headers=auth(token))
    problem(await client.post(f"/api/v1/follow-requests/{follow_id}/accept", headers=auth(token)), 404)
    problem(await client.post(f"/api/v1/follow-requests/{follow_id}/reject", headers=auth(token)), 404)
    assert await follow_state(settings, follow_id) == "accepted"
    assert len(await sent(settings, "Accept")) == 1


async def test_a_private_category_accepts_nobody(client: AsyncClient, settings: Settings) -> None:
    await approving_category(settings, "secret", "Secret", private=True)
    follow_id = await follow_request(settings, "secret", "rémi")
    token = await _token_for(settings, "admin")
    refused = await client.post(f"/api/v1/follow-requests/{follow_id}/accept", headers=auth(token))
    assert "private" in problem(refused, 403)["detail"]
    assert await follow_state(settings, follow_id) == "pending"
    rejected = await client.post(f"/api/v1/follow-requests/{follow_id}/reject", headers=auth(token))
    assert rejected.status_code == 204


async def test_answers_match_the_document(client: AsyncClient, settings: Settings) -> None:
    follow_id = await _arrange(settings)
    token = await _token_for(settings, "admin")
    document = await openapi(client)
    assert {"name": "concierge"} in document["tags"]
    operations = {
        op["operationId"]: op for item in document["paths"].values() for op in item.values() if "responses" in op
    }
    calls: list[tuple[str, str, str, str]] = [
        ("GET", "/follow-requests", "listFollowRequests", "200"),
        ("POST", f"/follow-requests/{follow_id}/accept", "acceptFollowRequest", "200"),
        ("POST", f"/follow-requests/{follow_id}/reject", "rejectFollowRequest", "404"),
    ]
    for method, url, operation_id, status in calls:
        response = await client.request(method, f"/api/v1{url}", headers=auth(token))
        assert str(response.status_code) == status, (url, response.text)
        described: dict[str, Any] = resolve(document, operations[operation_id]["responses"][status])
        schema = next(iter(described["content"].values()))["schema"]
        assert conforms(document, response.json(), schema) == [], response.json()
