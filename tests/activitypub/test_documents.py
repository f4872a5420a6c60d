"""ActivityPub GET endpoints through the real app: what a peer fetching our actors, posts and collections sees,
and that browsers still get the forum's pages at the same addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from httpx import AsyncClient, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request

from activitypub.objects import post_document
from activitypub.subjects import load_post_subject, load_thread_subject, read_post_subject, read_thread_subject
from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.events import EventBus
from forum.models import Actor, ActorKind, Follow, FollowState, OutgoingActivity, Post, RoleGrant, Thread
from forum.models.base import utcnow
from forum.permissions import Viewer
from forum.services import categories, posting
from tests.conftest import BASE_URL, forum_of
from tests.factories import make_category, make_member
from tests.forum.test_api import auth, member_token
from tests.forum.test_api import start_thread as api_thread

AP = "application/activity+json"
LD = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
PEER = {"Accept": AP}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
REMOTE = "https://remote.example"


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def member(settings: Settings, name: str, *, role: str = "member") -> Viewer:
    made = await make_member(settings, name, role=role)
    return Viewer(member_id=made.id, actor_id=made.actor_id, username=name, is_admin=role == "admin")


async def start_thread(settings: Settings, viewer: Viewer, slug: str, title: str = "Hello", body: str = "*Hi*") -> int:
    async with database(settings) as session:
        category = await categories.get_category(session, viewer, slug)
        thread, _post = await posting.create_thread(
            session, EventBus(), BASE_URL, viewer, category, title=title, body=body
        )
        return thread.id


async def reply(settings: Settings, viewer: Viewer, thread_id: int, body: str, in_reply_to: int | None = None) -> int:
    async with database(settings) as session:
        made = await posting.reply(session, EventBus(), BASE_URL, viewer, thread_id, body=body, in_reply_to=in_reply_to)
        return made.id


async def first_post_id(settings: Settings, thread_id: int) -> int:
    async with database(settings) as session:
        found = await session.scalar(select(Post.id).where(Post.thread_id == thread_id, Post.position == 1))
        assert found is not None
        return found


def json_of(response: Response, status: int = 200, media_type: str = AP) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == media_type
    assert varies_with_accept(response)
    body: dict[str, Any] = response.json()
    return body


def varies_with_accept(response: Response) -> bool:
    return "accept" in [part.strip().lower() for part in response.headers.get("vary", "").split(",")]


def rsa_2048(pem: str) -> bool:
    key = load_pem_public_key(pem.encode())
    return isinstance(key, RSAPublicKey) and key.key_size == 2048


# --- actors


async def test_category_is_a_group_a_peer_can_follow(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    group = json_of(await client.get("/c/general", headers=PEER))
    actor = f"{BASE_URL}/c/general"
    assert group["type"] == "Group"
    assert group["id"] == actor
    assert group["preferredUsername"] == "general"
    assert group["name"] == "General"
    assert group["inbox"] == f"{actor}/inbox"
    assert group["outbox"] == f"{actor}/outbox"
    assert group["followers"] == f"{actor}/followers"
    assert group["featured"] == f"{actor}/featured"
    assert group["moderators"] == f"{actor}/moderators"
    assert group["endpoints"]["sharedInbox"] == f"{BASE_URL}/inbox"
    assert group["publicKey"]["owner"] == actor
    assert group["publicKey"]["id"].startswith(actor + "#")
    assert rsa_2048(group["publicKey"]["publicKeyPem"])
    assert "https://www.w3.org/ns/activitystreams" in group["@context"]
    # The same address, asked as JSON-LD, answers in that media type.
    as_ld = json_of(await client.get("/c/general", headers={"Accept": LD}), media_type=LD)
    assert as_ld == group


async def test_browsers_still_get_pages_and_both_answers_vary(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    thread_id = await start_thread(settings, alice, "general", title="Garden news")
    for path in ("/c/general", "/u/alice", f"/t/{thread_id}"):
        page = await client.get(path, headers=BROWSER)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert varies_with_accept(page)
        as_json = await client.get(path, headers=PEER)
        assert as_json.headers["content-type"] == AP
        assert varies_with_accept(as_json)
    assert "Garden news" in (await client.get(f"/t/{thread_id}", headers=BROWSER)).text
    # A visitor's page comes from the page cache on the second request: still marked as varying.
    again = await client.get("/c/general", headers=BROWSER)
    assert again.status_code == 200 and varies_with_accept(again)
    # A page's refusal is the forum's page too.
    missing = await client.get("/c/nowhere", headers=BROWSER)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert varies_with_accept(missing)


@pytest.mark.parametrize(
    ("accept", "wants_json"),
    [
        ("application/activity+json", True),
        ('application/ld+json; profile="https://www.w3.org/ns/activitystreams"', True),
        ('application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams", '
         "text/html;q=0.1", True),  # Mastodon's
        ("text/html;q=0.5, application/activity+json", True),
        ("application/activity+json;q=0.5, text/html", False),
        ("application/activity+json;q=0", False),
        ("*/*", False),
        ("text/html", False),
        ('application/ld+json; profile="https://example.org/another"', False),
        ("image/png", False),
    ],
)  # fmt: skip
async def test_accept_header_decides(client: AsyncClient, settings: Settings, accept: str, wants_json: bool) -> None:
    await make_category(settings, "general", "General")
    response = await client.get("/c/general", headers={"Accept": accept})
    assert response.status_code == 200
    is_json = response.headers["content-type"].startswith("application/")
    assert is_json is wants_json
    assert varies_with_accept(response)


async def test_head_answers_like_get(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    head = await client.head("/c/general", headers=PEER)
    assert head.status_code == 200
    assert head.headers["content-type"] == AP and varies_with_accept(head)


async def test_member_is_a_person(client: AsyncClient, settings: Settings) -> None:
    await member(settings, "alice")
    person = json_of(await client.get("/u/Alice", headers=PEER))
    actor = f"{BASE_URL}/u/alice"
    assert person["type"] == "Person"
    assert person["id"] == actor and person["preferredUsername"] == "alice"
    assert person["inbox"] == f"{actor}/inbox" and person["outbox"] == f"{actor}/outbox"
    assert person["followers"] == f"{actor}/followers" and person["following"] == f"{actor}/following"
    assert person["endpoints"]["sharedInbox"] == f"{BASE_URL}/inbox"
    assert person["publicKey"]["owner"] == actor and rsa_2048(person["publicKey"]["publicKeyPem"])


async def test_names_answer_only_as_their_kind(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await member(settings, "alice")
    for path in ("/u/general", "/c/alice", "/u/nobody", "/c/nothing"):
        response = await client.get(path, headers=PEER)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404


async def test_instance_actor_is_made_once(client: AsyncClient, settings: Settings) -> None:
    first = json_of(await client.get("/actor", headers=PEER))
    assert first["type"] == "Application"
    assert first["id"] == f"{BASE_URL}/actor"
    assert first["preferredUsername"] == settings.host
    assert rsa_2048(first["publicKey"]["publicKeyPem"])
    again = json_of(await client.get("/actor", headers=PEER))
    assert again["publicKey"] == first["publicKey"]
    browser = await client.get("/actor", headers=BROWSER)
    assert browser.status_code == 302 and browser.headers["location"] == "/"


async def test_remote_actor_points_at_its_home(client: AsyncClient, settings: Settings) -> None:
    async with database(settings) as session:
        session.add(remote_actor("bob"))
    response = await client.get("/u/bob@remote.example", headers=PEER)
    assert response.status_code == 302
    assert response.headers["location"] == f"{REMOTE}/u/bob"


# --- posts


async def test_thread_is_a_page_and_replies_are_notes(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    bob = await member(settings, "bob")
    thread_id = await start_thread(settings, alice, "general", title="Seeds", body="Which **seeds**?")
    first = await first_post_id(settings, thread_id)
    answer = await reply(settings, bob, thread_id, "Tomatoes.", in_reply_to=first)
    plain = await reply(settings, alice, thread_id, "Thanks all.")
    nested = await reply(settings, alice, thread_id, "Which kind?", in_reply_to=answer)
    group, page_id = f"{BASE_URL}/c/general", f"{BASE_URL}/t/{thread_id}"

    page = json_of(await client.get(f"/t/{thread_id}", headers=PEER))
    assert page["type"] == "Page" and page["id"] == page_id
    assert page["name"] == "Seeds"
    assert "<strong>seeds</strong>" in page["content"]
    assert page["source"] == {"content": "Which **seeds**?", "mediaType": "text/markdown"}
    assert page["audience"] == group
    assert page["context"] == f"{page_id}/context"
    assert page["attributedTo"] == f"{BASE_URL}/u/alice"
    assert group in page["to"] and PUBLIC in page["to"]

    note = json_of(await client.get(f"/p/{answer}", headers=PEER))
    assert note["type"] == "Note" and note["id"] == f"{BASE_URL}/p/{answer}"
    assert note["inReplyTo"] == page_id
    assert note["attributedTo"] == f"{BASE_URL}/u/bob"
    assert note["audience"] == group and note["context"] == f"{page_id}/context"
    assert json_of(await client.get(f"/p/{plain}", headers=PEER))["inReplyTo"] == page_id
    assert json_of(await client.get(f"/p/{nested}", headers=PEER))["inReplyTo"] == f"{BASE_URL}/p/{answer}"

    # The first post's own address sends a peer to the Page's id rather than answer a document with another id.
    redirected = await client.get(f"/p/{first}", headers=PEER)
    assert redirected.status_code == 302 and redirected.headers["location"] == page_id
    assert varies_with_accept(redirected)
    # A browser at /p/ID still lands on the post's place in its thread.
    browser = await client.get(f"/p/{answer}", headers=BROWSER)
    assert browser.status_code == 302 and browser.headers["location"] == f"/t/{thread_id}#p{answer}"


async def test_mentions_of_remote_actors_are_tags_of_the_served_documents(
    client: AsyncClient, settings: Settings
) -> None:
    """A peer that fetches a post (backfill, a Mastodon user opening a reply) sees whom it mentions, as the
    `Create` that carried it said: `Mention` tags, and the mentioned actors addressed."""
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    async with database(settings) as session:
        session.add(remote_actor("bob"))
    thread_id = await start_thread(
        settings, alice, "general", body="Ask @bob@remote.example and @nobody@nowhere.example"
    )
    answer = await reply(settings, alice, thread_id, "Thanks @bob@remote.example, and @alice.")
    plain = await reply(settings, alice, thread_id, "No one named here.")
    bob = {"type": "Mention", "href": f"{REMOTE}/u/bob", "name": "@bob@remote.example"}

    page = json_of(await client.get(f"/t/{thread_id}", headers=PEER))
    note = json_of(await client.get(f"/p/{answer}", headers=PEER))
    for document in (page, note):
        # Only actors the forum knows are tagged (an unknown one is not fetched to serve a document).
        assert document["tag"] == [bob]
        assert f"{REMOTE}/u/bob" in document["to"] + document.get("cc", [])
    assert "tag" not in json_of(await client.get(f"/p/{plain}", headers=PEER))

    # The collections that embed the posts say the same: the Group's and Alice's outboxes, and featured.
    async with database(settings) as session:
        await session.execute(update(Thread).where(Thread.id == thread_id).values(pinned=True))
    group_outbox = json_of(await client.get("/c/general/outbox?page=1", headers=PEER))
    [embedded_page] = [item["object"]["object"] for item in group_outbox["orderedItems"]]
    alice_outbox = json_of(await client.get("/u/alice/outbox?page=1", headers=PEER))
    embedded = {item["object"]["id"]: item["object"] for item in alice_outbox["orderedItems"]}
    [featured_page] = json_of(await client.get("/c/general/featured", headers=PEER))["orderedItems"]
    for document in (embedded_page, embedded[note["id"]], featured_page):
        assert document["tag"] == [bob]
        assert f"{REMOTE}/u/bob" in document["to"] + document.get("cc", [])
    assert "tag" not in embedded[f"{BASE_URL}/p/{plain}"]


async def test_documents_follow_changes_made_through_the_forum(client: AsyncClient, settings: Settings) -> None:
    """Documents are kept rendered between fetches; a change made as members and admins make it shows at once."""
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    thread_id = await start_thread(settings, alice, "general", body="First text")
    answer = await reply(settings, alice, thread_id, "A reply")
    first = json_of(await client.get(f"/t/{thread_id}", headers=PEER))
    assert "First text" in first["content"]
    again = await client.get(f"/t/{thread_id}", headers=PEER)
    assert json_of(again) == first
    unchanged = await client.get(f"/t/{thread_id}", headers={**PEER, "If-None-Match": again.headers["etag"]})
    assert unchanged.status_code == 304 and varies_with_accept(unchanged)
    json_of(await client.get(f"/p/{answer}", headers=PEER))
    json_of(await client.get("/c/general", headers=PEER))
    forum = forum_of(client)
    async with forum.write() as session:
        await posting.edit_post(session, forum.bus, alice, await first_post_id(settings, thread_id), body="Second text")
    edited = json_of(await client.get(f"/t/{thread_id}", headers=PEER))
    assert "Second text" in edited["content"] and "updated" in edited
    async with forum.write() as session:
        await posting.delete_post(session, forum.bus, alice, answer)
    assert json_of(await client.get(f"/p/{answer}", headers=PEER), 410)["type"] == "Tombstone"
    async with forum.write() as session:
        category = await categories.get_category(session, Viewer(is_admin=True), "general")
        await categories.update_category(session, forum.bus, category, name="General", description="", private=True)
    for path in ("/c/general", f"/t/{thread_id}"):
        assert (await client.get(path, headers=PEER)).status_code == 404, path


async def test_deleted_and_removed_posts_are_tombstones(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    thread_id = await start_thread(settings, alice, "general")
    answer = await reply(settings, alice, thread_id, "Oops.")
    async with database(settings) as session:
        await posting.delete_post(session, EventBus(), alice, answer)
    gone = json_of(await client.get(f"/p/{answer}", headers=PEER), 410)
    assert gone["type"] == "Tombstone" and gone["id"] == f"{BASE_URL}/p/{answer}"
    assert gone["formerType"] == "Note" and "content" not in gone
    async with database(settings) as session:
        await session.execute(
            update(Post).where(Post.thread_id == thread_id, Post.position == 1).values(removed_at=utcnow())
        )
    removed = json_of(await client.get(f"/t/{thread_id}", headers=PEER), 410)
    assert removed["type"] == "Tombstone" and removed["formerType"] == "Page"
    assert removed["id"] == f"{BASE_URL}/t/{thread_id}"


async def test_private_category_never_federates(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "backroom", "Staff", private=True)
    admin = await member(settings, "root_admin", role="admin")
    thread_id = await start_thread(settings, admin, "backroom")
    answer = await reply(settings, admin, thread_id, "Between us.")
    collections = [f"/c/backroom/{name}" for name in ("outbox", "featured", "followers", "moderators")]
    for path in ("/c/backroom", f"/t/{thread_id}", f"/p/{answer}", f"/t/{thread_id}/context", *collections):
        response = await client.get(path, headers=PEER)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    # Nor does it show in its members' outboxes.
    outbox = json_of(await client.get("/u/root_admin/outbox", headers=PEER))
    assert outbox["totalItems"] == 0


async def test_remote_thread_points_at_its_origin(client: AsyncClient, settings: Settings) -> None:
    general = await make_category(settings, "general", "General")
    async with database(settings) as session:
        bob = remote_actor("bob")
        bob.summary = "<p>A <em>gardener</em></p>"  # sanitized when stored from the fediverse
        session.add(bob)
        await session.flush()
        thread = Thread(category_id=general.id, author_id=bob.id, ap_id=f"{REMOTE}/post/1", local=False,
                        context_id=f"{REMOTE}/post/1/context", title="From afar", post_count=2)  # fmt: skip
        session.add(thread)
        await session.flush()
        opening = Post(thread_id=thread.id, position=1, author_id=bob.id, ap_id=f"{REMOTE}/post/1", local=False,
                       source="Hi", html="<p>Hi</p>")  # fmt: skip
        answer = Post(thread_id=thread.id, position=2, author_id=bob.id, ap_id=f"{REMOTE}/comment/2", local=False,
                      source="Me", html="<p>Me</p>")  # fmt: skip
        session.add_all([opening, answer])
        await session.flush()
        thread_id, answer_id = thread.id, answer.id
    for path, location in (
        (f"/t/{thread_id}", f"{REMOTE}/post/1"),
        (f"/p/{answer_id}", f"{REMOTE}/comment/2"),
        (f"/t/{thread_id}/context", f"{REMOTE}/post/1/context"),
    ):
        response = await client.get(path, headers=PEER)
        assert response.status_code == 302, path
        assert response.headers["location"] == location

    # A browser sees the thread here, its origin named and linked, and the remote author's profile.
    page = await client.get(f"/t/{thread_id}", headers=BROWSER)
    assert page.status_code == 200
    assert "This thread comes from remote.example" in page.text
    assert f'<a href="{REMOTE}/post/1" rel="nofollow noopener">See the original</a>' in page.text
    assert 'href="/u/bob@remote.example"' in page.text
    profile = await client.get("/u/bob@remote.example", headers=BROWSER)
    assert profile.status_code == 200, profile.text
    assert "A member of remote.example" in profile.text and f'href="{REMOTE}/u/bob"' in profile.text
    assert "<em>gardener</em>" in profile.text and "Member since" not in profile.text
    assert "<p>Me</p>" in profile.text


async def test_unknown_objects_are_404(client: AsyncClient, settings: Settings) -> None:
    for path in ("/t/999", "/p/999", "/t/99999999999", "/activities/nothing", "/t/999/context"):
        response = await client.get(path, headers=PEER)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"


async def test_sent_activity_is_served_as_sent(client: AsyncClient, settings: Settings) -> None:
    alice = await member(settings, "alice")
    activity = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{BASE_URL}/activities/abc123",
                "type": "Like", "actor": f"{BASE_URL}/u/alice", "object": f"{REMOTE}/post/1"}  # fmt: skip
    async with database(settings) as session:
        session.add(OutgoingActivity(ap_id=activity["id"], actor_id=alice.actor_id, type="Like", document=activity))
    assert json_of(await client.get("/activities/abc123", headers=PEER)) == activity


# --- collections


async def test_group_outbox_announces_threads_newest_first(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    threads = [await start_thread(settings, alice, "general", title=f"Thread {n}") for n in range(3)]
    outbox_id = f"{BASE_URL}/c/general/outbox"
    outbox = json_of(await client.get("/c/general/outbox", headers=PEER))
    assert outbox["type"] == "OrderedCollection" and outbox["id"] == outbox_id
    assert outbox["totalItems"] == 3 and outbox["first"] == f"{outbox_id}?page=1"
    page = json_of(await client.get("/c/general/outbox?page=1", headers=PEER))
    assert page["type"] == "OrderedCollectionPage" and page["partOf"] == outbox_id and "next" not in page
    # Lemmy reads the latest ones from the collection itself: the same items.
    assert outbox["orderedItems"] == page["orderedItems"]
    announce = page["orderedItems"][0]
    assert announce["type"] == "Announce" and announce["actor"] == f"{BASE_URL}/c/general"
    create = announce["object"]
    assert create["type"] == "Create" and create["actor"] == f"{BASE_URL}/u/alice"
    assert [item["object"]["object"]["name"] for item in page["orderedItems"]] == ["Thread 2", "Thread 1", "Thread 0"]
    assert create["object"]["id"] == f"{BASE_URL}/t/{threads[2]}"
    for bad in ("0", "x", "1234567"):
        assert (await client.get(f"/c/general/outbox?page={bad}", headers=PEER)).status_code == 404
    browser = await client.get("/c/general/outbox", headers=BROWSER)
    assert browser.status_code == 302 and browser.headers["location"] == "/c/general"


async def test_followers_and_following_are_counts(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    bob = await member(settings, "bob")
    async with database(settings) as session:
        group_id = (await categories.get_category(session, alice, "general")).actor_id
        session.add_all([
            Follow(follower_id=alice.actor_id, target_id=group_id, state=FollowState.ACCEPTED),
            Follow(follower_id=bob.actor_id, target_id=group_id, state=FollowState.PENDING),
            Follow(follower_id=bob.actor_id, target_id=alice.actor_id, state=FollowState.ACCEPTED),
        ])  # fmt: skip
    group = json_of(await client.get("/c/general/followers", headers=PEER))
    assert group["totalItems"] == 1 and group["items"] == [] and "orderedItems" not in group
    person = json_of(await client.get("/u/alice/followers", headers=PEER))
    assert person["totalItems"] == 1 and "orderedItems" not in person and "first" not in person
    assert json_of(await client.get("/u/bob/following", headers=PEER))["totalItems"] == 1
    assert json_of(await client.get("/u/alice/following", headers=PEER))["totalItems"] == 1


async def test_featured_holds_the_pinned_pages(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    await start_thread(settings, alice, "general", title="Ordinary")
    pinned = await start_thread(settings, alice, "general", title="Read me first")
    async with database(settings) as session:
        await session.execute(update(Thread).where(Thread.id == pinned).values(pinned=True))
    featured = json_of(await client.get("/c/general/featured", headers=PEER))
    assert featured["type"] == "OrderedCollection" and featured["totalItems"] == 1
    [page] = featured["orderedItems"]
    assert page["type"] == "Page" and page["id"] == f"{BASE_URL}/t/{pinned}"
    assert page["name"] == "Read me first" and page["stickied"] is True


async def test_moderators_are_the_category_keepers(client: AsyncClient, settings: Settings) -> None:
    general = await make_category(settings, "general", "General")
    other = await make_category(settings, "other", "Other")
    await member(settings, "root_admin", role="admin")
    gardener = await member(settings, "gardener1")
    concierge = await member(settings, "concierge1")
    elsewhere = await member(settings, "elsewhere")
    await member(settings, "plain")
    async with database(settings) as session:
        session.add_all([
            RoleGrant(member_id=gardener.member_id, role="gardener", category_id=general.id),
            RoleGrant(member_id=concierge.member_id, role="concierge", category_id=None),
            RoleGrant(member_id=elsewhere.member_id, role="gardener", category_id=other.id),
        ])  # fmt: skip
    moderators = json_of(await client.get("/c/general/moderators", headers=PEER))
    expected = [f"{BASE_URL}/u/{name}" for name in ("root_admin", "gardener1", "concierge1")]
    assert moderators["orderedItems"] == expected and moderators["totalItems"] == 3
    other_mods = json_of(await client.get("/c/other/moderators", headers=PEER))["orderedItems"]
    assert f"{BASE_URL}/u/elsewhere" in other_mods and f"{BASE_URL}/u/gardener1" not in other_mods


async def test_person_outbox_wraps_posts_in_create(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    thread_id = await start_thread(settings, alice, "general", title="Mine")
    posts = [await reply(settings, alice, thread_id, f"Reply {n}") for n in range(21)]
    async with database(settings) as session:
        await posting.delete_post(session, EventBus(), alice, posts[0])
    outbox = json_of(await client.get("/u/alice/outbox", headers=PEER))
    assert outbox["totalItems"] == 21  # the thread and 20 live replies
    first = json_of(await client.get(outbox["first"], headers=PEER))
    assert len(first["orderedItems"]) == 20 and first["next"] == f"{BASE_URL}/u/alice/outbox?page=2"
    newest = first["orderedItems"][0]
    assert newest["type"] == "Create" and newest["actor"] == f"{BASE_URL}/u/alice"
    assert newest["object"]["id"] == f"{BASE_URL}/p/{posts[-1]}" and newest["object"]["type"] == "Note"
    second = json_of(await client.get(first["next"], headers=PEER))
    assert [item["object"]["id"] for item in second["orderedItems"]] == [f"{BASE_URL}/t/{thread_id}"]
    assert "next" not in second


async def test_thread_context_lists_every_post_in_order(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    thread_id = await start_thread(settings, alice, "general")
    replies = [await reply(settings, alice, thread_id, f"Reply {n}") for n in range(24)]
    async with database(settings) as session:
        await posting.delete_post(session, EventBus(), alice, replies[3])
    context_id = f"{BASE_URL}/t/{thread_id}/context"
    collection = json_of(await client.get(f"/t/{thread_id}/context", headers=PEER))
    assert collection["type"] == "OrderedCollection" and collection["id"] == context_id
    assert collection["totalItems"] == 25
    assert collection["attributedTo"] == f"{BASE_URL}/c/general"
    first = json_of(await client.get(collection["first"], headers=PEER))
    assert first["partOf"] == context_id and len(first["orderedItems"]) == 20
    second = json_of(await client.get(first["next"], headers=PEER))
    assert "next" not in second
    expected = [f"{BASE_URL}/t/{thread_id}", *(f"{BASE_URL}/p/{post}" for post in replies)]
    assert first["orderedItems"] + second["orderedItems"] == expected
    # The deleted reply keeps its place; fetching it gives its Tombstone.
    assert (await client.get(f"/p/{replies[3]}", headers=PEER)).status_code == 410
    browser = await client.get(f"/t/{thread_id}/context", headers=BROWSER)
    assert browser.status_code == 302 and browser.headers["location"] == f"/t/{thread_id}"


# --- authorized fetch


async def test_authorized_fetch_hook(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    thread_id = await start_thread(settings, alice, "general")
    seen: list[str] = []

    async def refuse(request: Request) -> None:
        seen.append(request.url.path)
        raise HTTPException(401, "Sign your request.")

    forum_of(client).extra["authorized_fetch"] = refuse
    assert (await client.get(f"/t/{thread_id}", headers=PEER)).status_code == 401
    assert (await client.get("/c/general/outbox", headers=PEER)).status_code == 401
    # An unsigned peer still gets the key it needs to verify what the actor signs, and nothing else.
    key = json_of(await client.get("/u/alice", headers=PEER))
    assert key["type"] == "Key" and key["owner"] == f"{BASE_URL}/u/alice" and "inbox" not in key
    # The instance actor is what signs our own fetches: always readable.
    assert json_of(await client.get("/actor", headers=PEER))["type"] == "Application"
    # Browsers are not asked to sign.
    assert (await client.get(f"/t/{thread_id}", headers=BROWSER)).status_code == 200
    assert seen == [f"/t/{thread_id}", "/c/general/outbox", "/u/alice"]

    async def accept(request: Request) -> None:
        return None

    forum_of(client).extra["authorized_fetch"] = accept
    assert json_of(await client.get("/u/alice", headers=PEER))["type"] == "Person"


def remote_actor(name: str) -> Actor:
    ap_id = f"{REMOTE}/u/{name}"
    return Actor(ap_id=ap_id, local=False, kind=ActorKind.PERSON, username=name, username_key=name.lower(),
                 domain="remote.example", inbox_url=f"{ap_id}/inbox")  # fmt: skip


async def test_cached_collections_follow_changes_made_through_the_forum(
    client: AsyncClient, settings: Settings
) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    thread = await api_thread(client, token)
    context, outbox = f"/t/{thread['id']}/context?page=1", "/c/general/outbox?page=1"
    person = "/u/alice/outbox?page=1"
    before = [json_of(await client.get(path, headers=PEER))["orderedItems"] for path in (context, outbox, person)]
    assert [len(items) for items in before] == [1, 1, 1]
    # Served again from the page cache, with an ETag a peer can revalidate.
    again = await client.get(context, headers=PEER)
    assert (await client.get(context, headers={**PEER, "If-None-Match": again.headers["etag"]})).status_code == 304

    replied = await client.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "More"}, headers=auth(token))
    assert replied.status_code == 201, replied.text
    await api_thread(client, token, title="Second")
    after = [json_of(await client.get(path, headers=PEER))["orderedItems"] for path in (context, outbox, person)]
    assert after[0] == [*before[0], replied.json()["ap_id"]]
    assert [item["object"]["object"]["name"] for item in after[1]] == ["Second", "Hello"]
    assert len(after[2]) == 3


async def test_documents_read_as_rows_are_the_documents_the_outbox_sends(settings: Settings) -> None:
    """`/t/ID` and `/p/ID` read their subject as rows on a bare connection; the outbox loads it as entities. The
    two make the same document, for a thread's Page, a reply, a reply to a reply, an edited and a deleted post."""
    await make_category(settings, "general", "General")
    alice = await member(settings, "alice")
    bob = await member(settings, "bob")
    thread_id = await start_thread(settings, alice, "general", title="Bees", body="*Where* do they go?")
    answer = await reply(settings, bob, thread_id, "To the hive.")
    deeper = await reply(settings, alice, thread_id, "Which one?", in_reply_to=answer)
    gone = await reply(settings, bob, thread_id, "Never mind.")
    async with database(settings) as session:
        await session.execute(update(Post).where(Post.id == answer).values(edited_at=utcnow(), source="To *the* hive."))
        await posting.delete_post(session, EventBus(), bob, gone)

    engine = create_engine(settings.database_url, pool_size=2)
    try:
        async with sessionmaker(engine)() as session, engine.connect() as connection:
            loaded = await load_thread_subject(session, thread_id)
            read = await read_thread_subject(connection, thread_id)
            assert loaded is not None and read is not None
            assert post_document(read) == post_document(loaded)
            assert post_document(read)["name"] == "Bees"
            for post_id in (answer, deeper, gone):
                loaded = await load_post_subject(session, post_id)
                read = await read_post_subject(connection, post_id)
                assert loaded is not None and read is not None
                assert post_document(read) == post_document(loaded)
            assert post_document(read)["type"] == "Tombstone"
            assert await read_post_subject(connection, 10_000) is None
            assert await read_thread_subject(connection, 10_000) is None
    finally:
        await engine.dispose()
