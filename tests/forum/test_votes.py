"""Votes on posts, as members cast them: through the API and the buttons of the thread page."""

from __future__ import annotations

import re

from httpx import AsyncClient
from sqlalchemy import func, select

from forum.config import Settings
from forum.models import Vote
from tests.conftest import BASE_URL, csrf_from, forum_of, register, submit
from tests.factories import make_category
from tests.forum.test_api import auth, member_token, problem, start_thread


async def _vote(client: AsyncClient, token: str, post_id: int, value: object) -> dict[str, object]:
    response = await client.put(f"/api/v1/posts/{post_id}/vote", json={"value": value}, headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_members_vote_change_and_withdraw_and_the_counts_follow(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member_token(settings, "alice")
    bob_token, carol_token = await member_token(settings, "bob"), await member_token(settings, "carol")
    thread = await start_thread(client, alice)
    opening = thread["posts"][0]["id"]

    assert await _vote(client, bob_token, opening, 1) == {
        "post": opening, "upvotes": 1, "downvotes": 0, "score": 1, "my_vote": 1,
    }  # fmt: skip
    # The same vote again changes nothing; another member's vote adds up.
    assert (await _vote(client, bob_token, opening, 1))["upvotes"] == 1
    assert (await _vote(client, carol_token, opening, -1))["score"] == 0
    # Bob changes his mind: his up vote becomes a down vote, not a second vote.
    assert await _vote(client, bob_token, opening, -1) == {
        "post": opening, "upvotes": 0, "downvotes": 2, "score": -2, "my_vote": -1,
    }  # fmt: skip
    withdrawn = await client.delete(f"/api/v1/posts/{opening}/vote", headers=auth(carol_token))
    assert withdrawn.status_code == 200
    assert withdrawn.json()["my_vote"] == 0 and withdrawn.json()["downvotes"] == 1

    read = await client.get(f"/api/v1/threads/{thread['id']}")
    post = read.json()["posts"][0]
    assert (post["upvotes"], post["downvotes"], post["score"]) == (0, 1, -1)
    async with forum_of(client).read() as session:
        assert await session.scalar(select(func.count()).select_from(Vote)) == 1


async def test_bad_votes_are_refused_with_a_reason(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member_token(settings, "alice")
    bob = await member_token(settings, "bob")
    thread = await start_thread(client, alice)
    opening = thread["posts"][0]["id"]

    own = problem(await client.put(f"/api/v1/posts/{opening}/vote", json={"value": 1}, headers=auth(alice)), 422)
    assert "your own post" in own["detail"]
    for value in (2, "1", True, None):
        refused = problem(
            await client.put(f"/api/v1/posts/{opening}/vote", json={"value": value}, headers=auth(bob)), 422
        )
        assert "value" in refused["detail"]
    problem(await client.put("/api/v1/posts/999999/vote", json={"value": 1}, headers=auth(bob)), 404)
    problem(await client.put(f"/api/v1/posts/{opening}/vote", json={"value": 1}), 401)
    deleted = await client.delete(f"/api/v1/posts/{opening}", headers=auth(alice))
    assert deleted.status_code == 204
    gone = problem(await client.put(f"/api/v1/posts/{opening}/vote", json={"value": 1}, headers=auth(bob)), 422)
    assert "gone" in gone["detail"]
    async with forum_of(client).read() as session:
        assert await session.scalar(select(func.count()).select_from(Vote)) == 0


async def test_vote_buttons_on_the_thread_page(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member_token(settings, "alice")
    thread = await start_thread(client, alice)
    opening = thread["posts"][0]["id"]
    await register(client, "bob")

    page = await client.get(f"/t/{thread['id']}")
    assert f'action="/p/{opening}/vote"' in page.text
    assert 'aria-pressed="false"' in page.text
    voted = await client.post(
        f"/p/{opening}/vote", data={"value": "1", "csrf_token": csrf_from(page)}, headers={"Origin": BASE_URL}
    )
    assert voted.status_code == 303
    assert voted.headers["location"] == f"/p/{opening}"

    # Bob sees his vote pressed, the score, and a button that now withdraws it.
    page = await client.get(f"/t/{thread['id']}")
    box = re.search(r'<form class="votes".*?</form>', page.text, re.S)
    assert box is not None
    assert re.search(r'class="vote-up" name="value" value="0" aria-pressed="true"', box.group(0))
    assert '<span class="score" title="1 up, 0 down">1</span>' in box.group(0)
    withdrawn = await submit(client, f"/t/{thread['id']}", {"value": "0"}, action=f"/p/{opening}/vote")
    assert withdrawn.status_code == 303
    assert '<span class="score" title="0 up, 0 down">0</span>' in (await client.get(f"/t/{thread['id']}")).text

    # A forged form (no CSRF token) changes nothing.
    forged = await client.post(f"/p/{opening}/vote", data={"value": "1"}, headers={"Origin": BASE_URL})
    assert forged.status_code == 403
    async with forum_of(client).read() as session:
        assert await session.scalar(select(func.count()).select_from(Vote)) == 0


async def test_a_visitor_sees_the_score_without_buttons(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice, bob = await member_token(settings, "alice"), await member_token(settings, "bob")
    thread = await start_thread(client, alice)
    before = await client.get(f"/t/{thread['id']}")
    assert "Score:" not in before.text
    await _vote(client, bob, thread["posts"][0]["id"], 1)
    # The cached visitor's page went stale with the vote.
    page = await client.get(f"/t/{thread['id']}")
    assert "Score: 1" in page.text
    assert "/vote" not in page.text
