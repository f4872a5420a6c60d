"""`/concierge` in a browser: the follow requests section, its buttons, who may see it; and the admin's
"Approve followers" setting, which the Group document follows and whose end accepts who waited."""

from __future__ import annotations

import re

from httpx import AsyncClient, Response

from forum.config import Settings
from tests.conftest import BASE_URL, csrf_from, submit
from tests.factories import make_category, make_member
from tests.roles.concierge.factories import (
    REMOTE,
    approving_category,
    follow_request,
    follow_state,
    grant,
    sent,
)

PASSWORD = "correct horse battery"
EMPTY = "No follow requests are waiting."


async def _log_in(client: AsyncClient, settings: Settings, name: str, *, role: str = "member") -> None:
    await make_member(settings, name, password=PASSWORD, role=role)
    logged_in = await submit(client, "/login", {"username": name, "password": PASSWORD})
    assert logged_in.status_code == 303, logged_in.text


def _row(page: Response, handle: str) -> str:
    """The table row of one request, as a person reads it."""
    rows: list[str] = re.findall(r'<tr id="follow-request-\d+">.*?</tr>', page.text, re.S)
    found = [row for row in rows if f"@{handle}" in row]
    assert len(found) == 1, rows
    return found[0]


async def _press(client: AsyncClient, page: Response, handle: str, button: str) -> Response:
    """Press Accept or Reject on a request's line: post its form, with the page's CSRF token."""
    row = _row(page, handle)
    forms = re.findall(r'<form method="post" action="([^"]+)"[^>]*>.*?<button[^>]*>([^<]+)</button>', row, re.S)
    action = next(url for url, label in forms if label == button)
    return await client.post(action, data={"csrf_token": csrf_from(page)}, headers={"Origin": BASE_URL})


async def test_concierge_accepts_and_rejects_requests(client: AsyncClient, settings: Settings) -> None:
    await approving_category(settings, "general", "General")
    await approving_category(settings, "other", "Other")
    remi = await follow_request(settings, "general", "rémi")
    sam = await follow_request(settings, "general", "sam", domain="elsewhere.example")
    await follow_request(settings, "other", "olga")
    await make_member(settings, "cleo", password=PASSWORD)
    await grant(settings, "cleo", "concierge", "general")
    await submit(client, "/login", {"username": "cleo", "password": PASSWORD})

    home = await client.get("/")
    assert '<a href="/concierge">Concierge</a>' in home.text
    page = await client.get("/concierge")
    assert page.status_code == 200
    assert "<h2" in page.text and "Follow requests" in page.text
    row = _row(page, f"rémi@{REMOTE}")
    assert "Rémi" in row and '<a href="/c/general">General</a>' in row and "<time" in row
    assert "olga" not in page.text  # another category's request: not cleo's to answer

    accepted = await _press(client, page, f"rémi@{REMOTE}", "Accept")
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/concierge?done=follow-accepted#follow-requests"
    after = await client.get(accepted.headers["location"])
    assert "Follow request accepted" in after.text
    assert "rémi@" not in after.text and "sam@elsewhere.example" in after.text
    assert await follow_state(settings, remi) == "accepted"
    [answer] = await sent(settings, "Accept")
    assert answer.inboxes == [f"https://{REMOTE}/users/rémi/inbox"]

    rejected = await _press(client, after, "sam@elsewhere.example", "Reject")
    assert rejected.status_code == 303
    after = await client.get(rejected.headers["location"])
    assert "Follow request rejected" in after.text
    assert EMPTY in after.text
    assert await follow_state(settings, sam) is None
    [answer] = await sent(settings, "Reject")
    assert answer.document["object"]["actor"] == "https://elsewhere.example/users/sam"


async def test_a_request_answered_twice_says_why(client: AsyncClient, settings: Settings) -> None:
    await approving_category(settings, "general", "General")
    await follow_request(settings, "general", "rémi")
    await _log_in(client, settings, "ada", role="admin")
    page = await client.get("/concierge")
    assert (await _press(client, page, f"rémi@{REMOTE}", "Accept")).status_code == 303
    again = await _press(client, page, f"rémi@{REMOTE}", "Reject")  # the page was stale
    assert again.status_code == 404
    assert "No such follow request" in again.text and EMPTY in again.text
    assert len(await sent(settings, "Accept")) == 1 and await sent(settings, "Reject") == []


async def test_a_concierge_of_another_category_may_not_answer(client: AsyncClient, settings: Settings) -> None:
    await approving_category(settings, "general", "General")
    await approving_category(settings, "other", "Other")
    remi = await follow_request(settings, "general", "rémi")
    await make_member(settings, "cleo", password=PASSWORD)
    await grant(settings, "cleo", "concierge", "other")
    await submit(client, "/login", {"username": "cleo", "password": PASSWORD})
    page = await client.get("/concierge")
    assert page.status_code == 200 and EMPTY in page.text
    refused = await client.post(
        f"/concierge/follow-requests/{remi}/accept", data={"csrf_token": csrf_from(page)}, headers={"Origin": BASE_URL}
    )
    assert refused.status_code == 403
    assert "Only a concierge of “General”" in refused.text
    assert await follow_state(settings, remi) == "pending"


async def test_members_get_the_403_page_and_guests_the_login(client: AsyncClient, settings: Settings) -> None:
    await approving_category(settings, "general", "General")
    remi = await follow_request(settings, "general", "rémi")
    guest = await client.get("/concierge")
    assert guest.status_code == 303 and guest.headers["location"] == "/login?next=/concierge"
    token = csrf_from(await client.get("/login"))
    posted = await client.post(
        f"/concierge/follow-requests/{remi}/accept", data={"csrf_token": token}, headers={"Origin": BASE_URL}
    )
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login")

    await _log_in(client, settings, "milo")
    await grant(settings, "milo", "gardener")  # another duty opens no door here
    member = await client.get("/concierge", headers={"Accept": "text/html"})
    assert member.status_code == 403
    assert "Not allowed" in member.text and "Only a concierge may do this." in member.text
    assert 'href="/concierge"' not in (await client.get("/")).text
    posted = await client.post(
        f"/concierge/follow-requests/{remi}/accept",
        data={"csrf_token": csrf_from(member)},
        headers={"Origin": BASE_URL},
    )
    assert posted.status_code == 403
    assert await follow_state(settings, remi) == "pending"


async def test_buttons_need_the_forms_token(client: AsyncClient, settings: Settings) -> None:
    await approving_category(settings, "general", "General")
    remi = await follow_request(settings, "general", "rémi")
    await _log_in(client, settings, "ada", role="admin")
    await client.get("/concierge")
    forged = await client.post(
        f"/concierge/follow-requests/{remi}/accept", data={"csrf_token": "forged"}, headers={"Origin": BASE_URL}
    )
    assert forged.status_code == 403 and "The form expired" in forged.text
    other_site = await client.post(
        f"/concierge/follow-requests/{remi}/reject", data={}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    huge = await client.post(
        "/concierge/follow-requests/99999999999/accept", data={"csrf_token": "x"}, headers={"Origin": BASE_URL}
    )
    assert 400 <= huge.status_code < 500
    assert await follow_state(settings, remi) == "pending"


async def test_instance_concierge_sees_the_link_and_every_category(client: AsyncClient, settings: Settings) -> None:
    await approving_category(settings, "general", "General")
    await approving_category(settings, "other", "Other")
    await follow_request(settings, "general", "rémi")
    await follow_request(settings, "other", "olga")
    await make_member(settings, "cleo", password=PASSWORD)
    await grant(settings, "cleo", "concierge")
    await submit(client, "/login", {"username": "cleo", "password": PASSWORD})
    page = await client.get("/concierge")
    assert 'href="/concierge"' in page.text
    assert _row(page, f"rémi@{REMOTE}") and _row(page, f"olga@{REMOTE}")


async def test_admin_sets_approve_followers(client: AsyncClient, settings: Settings) -> None:
    """The checkbox in /admin: the Group says it approves followers; unchecked, who waited is accepted."""
    await _log_in(client, settings, "ada", role="admin")
    created = await submit(
        client,
        "/admin",
        {"action": "create_category", "slug": "general", "name": "General", "approve_followers": "on"},
    )
    assert created.status_code == 303
    assert await _group_approves(client) is True
    remi = await follow_request(settings, "general", "rémi")
    admin = await client.get("/admin")
    assert re.search(r'name="approve_followers" checked', admin.text)

    saved = await submit(
        client, "/admin", {"action": "update_category", "category_id": "1", "name": "General", "description": ""}
    )
    assert saved.status_code == 303
    assert await _group_approves(client) is False
    assert await follow_state(settings, remi) == "accepted"
    [answer] = await sent(settings, "Accept")
    assert answer.document["object"]["id"] == f"https://{REMOTE}/follows/rémi-general"
    assert EMPTY in (await client.get("/concierge")).text

    again = await submit(
        client,
        "/admin",
        {"action": "update_category", "category_id": "1", "name": "General", "approve_followers": "on"},
    )
    assert again.status_code == 303
    assert await _group_approves(client) is True
    assert await follow_state(settings, remi) == "accepted"  # approving from now on changes no answered follow


async def test_a_private_category_keeps_its_requests_waiting(client: AsyncClient, settings: Settings) -> None:
    """Turned private and open at once: nobody elsewhere may follow it, so nothing is accepted."""
    await make_category(settings, "general", "General")
    await _log_in(client, settings, "ada", role="admin")
    await submit(client, "/admin", {"action": "update_category", "category_id": "1", "name": "General",
                                    "approve_followers": "on"})  # fmt: skip
    remi = await follow_request(settings, "general", "rémi")
    await submit(client, "/admin", {"action": "update_category", "category_id": "1", "name": "General",
                                    "private": "on"})  # fmt: skip
    assert await follow_state(settings, remi) == "pending"
    assert await sent(settings, "Accept") == []
    page = await client.get("/concierge")
    assert _row(page, f"rémi@{REMOTE}")
    refused = await _press(client, page, f"rémi@{REMOTE}", "Accept")
    assert refused.status_code == 403 and "is private" in refused.text
    assert (await _press(client, page, f"rémi@{REMOTE}", "Reject")).status_code == 303


async def _group_approves(client: AsyncClient) -> bool:
    response = await client.get("/c/general", headers={"Accept": "application/activity+json"})
    assert response.status_code == 200, response.text
    approves: bool = response.json()["manuallyApprovesFollowers"]
    return approves
