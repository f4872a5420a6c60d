"""Federation under faults, with real servers, real processes and real databases (issue 3, "Faults"):

- a peer down for a while, then back, receives everything queued for it, exactly once and in the order it
  was written;
- a delivery worker or an inbox worker killed with SIGKILL in the middle of a batch loses nothing;
- the same activity delivered twice (again, through another inbox, under another activity id, or taken twice
  by two workers after a lease ran out) makes one post.

Time is never faked in the code under test. Where a test cannot wait for hours (a retry's backoff) or five
minutes (a lease), it moves that one timestamp in the database and says so where it does.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from activitypub.processing import InboxWorker
from forum.app import build_jobs, create_app, federation_of
from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.models import (
    Delivery,
    DeliveryState,
    Follow,
    FollowState,
    Instance,
    OutgoingActivity,
    Post,
    ReceivedActivity,
    ReceivedState,
    Thread,
)
from forum.models.base import utcnow
from forum.services import accounts
from forum.web.context import ForumContext
from tests.factories import make_category, make_member
from tests.federation.instances import eventually, free_port, running
from tests.federation.processes import RemotePeer, SlowInbox, forum_worker, serving, start_serve

pytestmark = pytest.mark.slow


# -- 1. a peer down for a while, then back ----------------------------------------------------------------


@dataclass
class Outage:
    """What a peer's outage left: A's threads with their posts, B's copies, and A's records of B."""

    a_threads: list[list[str]]  # per thread: the ap_ids of its posts in A's order (the opening one first)
    b_threads: list[list[str]]  # B's copies, in B's order
    b_titles: list[str]
    b_remote_posts: list[str]  # every post B stored from elsewhere
    deliveries: list[Delivery]  # A's deliveries of the posts to B, after B came back
    health: Instance | None
    back_at: Any


async def test_peer_down_then_back_receives_everything_queued_once(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    outage = await _outage(database_url, tmp_path, sqlite_template, replies=[2, 2])
    # B shows both threads, each post in its thread, exactly once.
    assert sorted(outage.b_titles) == ["Topic 1", "Topic 2"]
    assert [sorted(posts) for posts in outage.b_threads] == [sorted(posts) for posts in outage.a_threads]
    assert sorted(outage.b_remote_posts) == sorted(p for posts in outage.a_threads for p in posts)
    # Only the first delivery was tried while B was down (the others waited behind it); all went through,
    # and A forgot B's failures.
    assert [(d.state, d.attempts, d.last_status) for d in outage.deliveries] == [
        (DeliveryState.DELIVERED, 1, 200),
        *[(DeliveryState.DELIVERED, 0, 200)] * 5,
    ]
    health = outage.health
    assert health is not None and health.failures == 0 and health.first_failure_at is None
    assert not health.unreachable and health.last_success_at is not None and health.last_success_at >= outage.back_at


async def test_peer_down_then_back_receives_a_conversation_in_its_order(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    outage = await _outage(database_url, tmp_path, sqlite_template, replies=[8])
    assert outage.b_threads == outage.a_threads


async def _outage(database_url: str, tmp_path: Path, sqlite_template: Path, *, replies: list[int]) -> Outage:
    """B (a `forum serve` process on 127.0.0.2) follows A's category; B stops; A's member opens a thread per
    item of `replies` and answers it that many times; B starts again at the same address with the same
    database; the retries become due; every delivery to B goes through."""
    b_port = free_port("127.0.0.2")
    b_settings = _settings("127.0.0.2", b_port, _sqlite_copy(sqlite_template, tmp_path / "b.db"), tmp_path / "b")
    bob = await _member_token(b_settings, "bob")
    async with running("127.0.0.1", database_url, tmp_path / "a") as a, _database(b_settings) as b_db:
        await a.category("general", "General")
        alice = await a.member("alice")
        b = await start_serve(b_settings, "127.0.0.2", b_port, tmp_path / "b-serve-1.log")
        b_api = httpx.AsyncClient(base_url=b_settings.base_url, headers={"Authorization": f"Bearer {bob}"})
        try:
            followed = await b_api.post("/api/v1/follows", json={"target": f"general@{a.host}"})
            assert followed.status_code == 201, followed.text
            await eventually(lambda: _follow_accepted(b_db))

            # B goes down: connections to it are refused from now on. (uvicorn shuts down cleanly, then
            # re-raises the SIGTERM it caught, so a clean stop is -15 as well as 0.)
            assert await b.stop() in (0, -signal.SIGTERM), b.output()
            opened = []
            for n, count in enumerate(replies, 1):
                thread = await a.api(alice, "POST", "/threads", {"category": "general", "title": f"Topic {n}",
                                                                 "body": f"Opening {n}"})  # fmt: skip
                assert thread.status_code == 201, thread.text
                for m in range(1, count + 1):
                    reply = await a.api(alice, "POST", f"/threads/{thread.json()['id']}/posts",
                                        {"body": f"Reply {n}.{m}"})  # fmt: skip
                    assert reply.status_code == 201, reply.text
                opened.append(thread.json())

            # The first delivery to B (one Announce per post, to B's shared inbox) failed and waits for its
            # retry, a minute or more away; every later one waits behind it, so none can overtake it: none is
            # dropped, none refused for good.
            expected = len(replies) + sum(replies)
            pending = await eventually(lambda: _tried_once(a.forum.sessions, b_settings.host, expected))
            now = utcnow()
            first = min(pending, key=lambda row: row.id)
            assert first.attempts == 1 and first.last_status is None and first.last_error, first
            for row in pending:
                assert row.state == DeliveryState.QUEUED, row
                assert row.next_attempt_at >= first.next_attempt_at > now + timedelta(seconds=45), row
            async with a.forum.read() as session:
                health = await session.scalar(select(Instance).where(Instance.domain == b_settings.host))
            assert health is not None and health.failures >= 1 and health.first_failure_at is not None

            # B comes back at the same address, with the same database.
            b = await start_serve(b_settings, "127.0.0.2", b_port, tmp_path / "b-serve-2.log")
            back_at = utcnow()
            # Stands in for the backoff delay passing: every queued row moves earlier by the same amount, so
            # the first retry is due now and the others follow at their own (jittered) times, as they would.
            async with a.forum.write() as session:
                rows = list(await session.scalars(select(Delivery).where(Delivery.id.in_([r.id for r in pending]))))
                shift = min(row.next_attempt_at for row in rows) - utcnow()
                for row in rows:
                    row.next_attempt_at -= shift
            await eventually(lambda: _all_delivered(a.forum.sessions, b_settings.host), timeout=20)

            a_threads, b_threads = [], []
            for thread in opened:
                a_posts = await _posts_of(a.http, alice, thread["id"])
                # The opening post travels as the thread's Page, whose id is the thread's.
                a_threads.append([thread["ap_id"], *(p["ap_id"] for p in a_posts[1:])])
                b_posts = await eventually(partial(_copy_of, b_api, f"general@{a.host}", thread, len(a_posts)))
                b_threads.append([p["ap_id"] for p in b_posts])
            async with b_db() as session:
                b_remote_posts = list(await session.scalars(select(Post.ap_id).where(Post.local.is_(False))))
            async with a.forum.read() as session:
                deliveries = list(
                    await session.scalars(
                        select(Delivery).where(Delivery.id.in_([r.id for r in pending])).order_by(Delivery.id)
                    )
                )
                health = await session.scalar(select(Instance).where(Instance.domain == b_settings.host))
            return Outage(
                a_threads=a_threads,
                b_threads=b_threads,
                b_titles=[t["title"] for t in await _threads(b_api, f"general@{a.host}")],
                b_remote_posts=[str(p) for p in b_remote_posts],
                deliveries=deliveries,
                health=health,
                back_at=back_at,
            )
        finally:
            await b_api.aclose()
            await b.stop()


# -- 2. a worker killed with SIGKILL in the middle of a batch ----------------------------------------------


async def test_delivery_worker_killed_mid_batch_loses_nothing(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    a_settings = _settings("127.0.0.1", free_port("127.0.0.1"), database_url, tmp_path / "a")
    b_settings = _settings(
        "127.0.0.2", free_port("127.0.0.2"), _sqlite_copy(sqlite_template, tmp_path / "b.db"), tmp_path / "b"
    )
    await make_category(a_settings, "general", "General")
    alice = await _member_token(a_settings, "alice")
    bob = await _member_token(b_settings, "bob")
    a_app = create_app(a_settings, run_worker=False)  # A's web process only: its worker is the subprocess
    b_app = create_app(b_settings, run_worker=True)
    b_inbox = SlowInbox(b_app, delay=1.0)  # B answers each delivery after a second: a worker is mid-batch long
    async with (
        serving(a_app, "127.0.0.1", _port(a_settings)),
        serving(b_inbox, "127.0.0.2", _port(b_settings)),
        httpx.AsyncClient(base_url=a_settings.base_url, headers={"Authorization": f"Bearer {alice}"}) as a_api,
        httpx.AsyncClient(base_url=b_settings.base_url, headers={"Authorization": f"Bearer {bob}"}) as b_api,
    ):
        a_forum, b_forum = _forum(a_app), _forum(b_app)
        followed = await b_api.post("/api/v1/follows", json={"target": f"general@{a_settings.host}"})
        assert followed.status_code == 201, followed.text
        a_jobs = build_jobs(a_forum)

        async def follow_done() -> bool:
            await a_jobs.run_once()  # A's background work, one round at a time, until B hears the Accept
            return await _follow_accepted(b_forum.sessions)

        await eventually(follow_done, timeout=20, every=0.2)
        baseline = len(b_inbox.answered)  # what B heard before the test's part: the Accept

        titles = [f"Queued {n}" for n in range(12)]
        for title in titles:
            created = await a_api.post("/api/v1/threads", json={"category": "general", "title": title, "body": "x"})
            assert created.status_code == 201, created.text
        queued = await _deliveries(a_forum.sessions, b_settings.host)
        assert len(queued) == 12 and {d.state for d in queued} == {DeliveryState.QUEUED}
        sent_ids = {d.ap_id for d in queued}

        async with forum_worker(a_settings, tmp_path / "worker-1.log") as first:
            # Mid-batch: B has answered some deliveries, the worker still holds the others.
            await eventually(lambda: b_inbox.heard_at_least(baseline + 4), timeout=20, every=0.02)
            assert await first.kill() == -9
        answered_before_kill = set(b_inbox.answered[baseline:])
        assert answered_before_kill < sent_ids
        rows = await _deliveries(a_forum.sessions, b_settings.host)
        # The dead worker's outcomes were never written: every row is still taken, under a lease.
        assert {d.state for d in rows} == {DeliveryState.SENDING}
        assert all(d.locked_until is not None and d.locked_until > utcnow() for d in rows)

        async with forum_worker(a_settings, tmp_path / "worker-2.log") as second:
            # A new thread proves the second worker is up and delivering: the leased rows stay untouched meanwhile.
            late = await a_api.post("/api/v1/threads", json={"category": "general", "title": "Late", "body": "x"})
            assert late.status_code == 201, late.text
            (late_id,) = {d.ap_id for d in await _deliveries(a_forum.sessions, b_settings.host)} - sent_ids
            await eventually(lambda: b_inbox.heard(late_id), timeout=20)
            still = await _deliveries(a_forum.sessions, b_settings.host)
            # Not taken again: still sending under the very leases the dead worker wrote.
            assert [(d.ap_id, d.state, d.locked_until) for d in still if d.ap_id in sent_ids] == [
                (d.ap_id, d.state, d.locked_until) for d in rows
            ]

            # Stands in for the five-minute lease running out: the dead worker's rows may be taken again.
            async with a_forum.write() as session:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.state == DeliveryState.SENDING)
                    .values(locked_until=utcnow() - timedelta(seconds=1))
                )
            await eventually(lambda: _all_delivered(a_forum.sessions, b_settings.host), timeout=20)
            assert second.returncode is None, second.output()

        # Every activity reached B at least once; those answered before the kill were sent again.
        assert sent_ids | {late_id} <= set(b_inbox.answered)
        assert all(b_inbox.answered.count(ap_id) >= 2 for ap_id in answered_before_kill)
        # B's inbox kept each activity once, and B shows each thread once.
        b_threads = await eventually(lambda: _threads_if(b_api, f"general@{a_settings.host}", 13), timeout=20)
        assert sorted(t["title"] for t in b_threads) == sorted([*titles, "Late"])
        async with b_forum.read() as session:
            kept = (await session.scalars(select(ReceivedActivity.ap_id))).all()
            threads = await session.scalar(select(func.count()).select_from(Thread).where(Thread.local.is_(False)))
        assert sorted(a for a in kept if a in sent_ids) == sorted(sent_ids)
        assert threads == 13


async def test_inbox_worker_killed_mid_batch_loses_nothing(database_url: str, tmp_path: Path) -> None:
    a_settings = _settings("127.0.0.1", free_port("127.0.0.1"), database_url, tmp_path / "a")
    await make_category(a_settings, "general", "General")
    peer = RemotePeer("127.0.0.3", free_port("127.0.0.3"))
    a_app = create_app(a_settings, run_worker=False)
    notes = [peer.note(f"n{n}", f"Remote topic {n}", audience=f"{a_settings.base_url}/c/general") for n in range(10)]
    # Each Create names its Note by id only: the worker fetches it, slowly, so a kill finds it mid-batch.
    peer.fetch_delay = 0.6
    async with serving(a_app, "127.0.0.1", _port(a_settings)), serving(peer.app, peer.host, peer.port):
        a_forum = _forum(a_app)
        async with httpx.AsyncClient() as http:
            for note in notes:
                answer = await peer.post(http, f"{a_settings.base_url}/inbox", peer.create(note, embed=False))
                assert answer.status_code == 202, answer.text
        assert await _received_states(a_forum) == {ReceivedState.QUEUED: 10}

        async with forum_worker(a_settings, tmp_path / "worker-1.log") as first:
            await eventually(lambda: _received_count(a_forum, ReceivedState.DONE, at_least=3), timeout=20, every=0.02)
            assert await first.kill() == -9
        states = await _received_states(a_forum)
        assert states.get(ReceivedState.PROCESSING, 0) >= 1, states
        async with a_forum.read() as session:
            leased = (
                await session.scalars(
                    select(ReceivedActivity.locked_until).where(ReceivedActivity.state == ReceivedState.PROCESSING)
                )
            ).all()
        assert all(until is not None and until > utcnow() for until in leased)

        async with forum_worker(a_settings, tmp_path / "worker-2.log"):
            # Stands in for the five-minute lease running out: the dead worker's rows may be taken again.
            async with a_forum.write() as session:
                await session.execute(
                    update(ReceivedActivity)
                    .where(ReceivedActivity.state == ReceivedState.PROCESSING)
                    .values(locked_until=utcnow() - timedelta(seconds=1))
                )
            await eventually(lambda: _received_count(a_forum, ReceivedState.DONE, at_least=10), timeout=25)

        # Every activity processed, each into exactly one thread.
        async with a_forum.read() as session:
            outcomes = (await session.scalars(select(ReceivedActivity.outcome))).all()
            ap_ids = (await session.scalars(select(Thread.ap_id).where(Thread.local.is_(False)))).all()
        assert sorted(str(ap_id) for ap_id in ap_ids) == sorted(note["id"] for note in notes)
        assert all(outcome and outcome.startswith("thread ") for outcome in outcomes), outcomes


# -- 3. the same activity twice ----------------------------------------------------------------------------


async def test_the_same_activity_delivered_twice_makes_one_post(database_url: str, tmp_path: Path) -> None:
    peer = RemotePeer("127.0.0.3", free_port("127.0.0.3"))
    async with running("127.0.0.1", database_url, tmp_path / "a") as a, serving(peer.app, peer.host, peer.port):
        await a.category("general", "General")
        alice = await a.member("alice")
        opened = await a.api(alice, "POST", "/threads", {"category": "general", "title": "Bees", "body": "Winter?"})
        assert opened.status_code == 201, opened.text
        thread = opened.json()
        reply = peer.note("r1", "They cluster.", audience=f"{a.base_url}/c/general", in_reply_to=thread["ap_id"])
        create = peer.create(reply)
        async with httpx.AsyncClient() as http:
            # The very same signed request, twice; then the same activity through the category's and the
            # member's inboxes, at the same moment.
            request = peer.signed(f"{a.base_url}/inbox", create)
            for _ in range(2):
                assert (await http.post(request.url, content=request.body, headers=request.headers)).status_code == 202
            answers = await asyncio.gather(
                peer.post(http, f"{a.base_url}/c/general/inbox", create),
                peer.post(http, f"{a.base_url}/u/alice/inbox", create),
                peer.post(http, f"{a.base_url}/inbox", create),
            )
            assert [r.status_code for r in answers] == [202, 202, 202]
            await eventually(lambda: _processed(a.forum, create["id"]))
            # A server that sends the same Note again under a new activity id (a retry with a fresh id).
            again = peer.create(reply)
            assert (await peer.post(http, f"{a.base_url}/inbox", again)).status_code == 202
            await eventually(lambda: _processed(a.forum, again["id"]))

        posts = await _posts_of(a.http, alice, thread["id"])
        assert len(posts) == 2 and posts[1]["ap_id"] == reply["id"]
        async with a.forum.read() as session:
            rows = (await session.execute(select(ReceivedActivity.ap_id, ReceivedActivity.outcome))).all()
            stored = await session.scalar(select(func.count()).select_from(Post).where(Post.ap_id == reply["id"]))
        outcomes = {ap_id: str(outcome) for ap_id, outcome in rows}
        assert set(outcomes) == {create["id"], again["id"]}
        assert outcomes[create["id"]].startswith("reply ") and outcomes[again["id"]] == "already known"
        assert stored == 1


async def test_a_row_taken_again_after_its_lease_changes_nothing(database_url: str, tmp_path: Path) -> None:
    a_settings = _settings("127.0.0.1", free_port("127.0.0.1"), database_url, tmp_path / "a")
    await make_category(a_settings, "general", "General")
    peer = RemotePeer("127.0.0.3", free_port("127.0.0.3"))
    a_app = create_app(a_settings, run_worker=False)  # the workers are driven by hand below
    async with serving(a_app, "127.0.0.1", _port(a_settings)), serving(peer.app, peer.host, peer.port):
        a_forum = _forum(a_app)
        federation = federation_of(a_forum)
        general = f"{a_settings.base_url}/c/general"
        async with httpx.AsyncClient() as http:
            # First: the first run did its work and was killed before writing the outcome down; after the
            # lease, a second worker takes the row again.
            finished = peer.create(peer.note("t1", "Finished once", audience=general))
            assert (await peer.post(http, f"{a_settings.base_url}/inbox", finished)).status_code == 202
            assert await InboxWorker(federation).run_once() == 1
            before = await _snapshot(a_forum)
            # Stands in for "killed after the handler's commit, before the outcome was written": the row is
            # left as a dead worker leaves it, taken and with its lease run out.
            async with a_forum.write() as session:
                await session.execute(
                    update(ReceivedActivity)
                    .where(ReceivedActivity.ap_id == finished["id"])
                    .values(state=ReceivedState.PROCESSING, locked_until=utcnow() - timedelta(seconds=1))
                )
            assert await InboxWorker(federation).run_once() == 1
            assert await _snapshot(a_forum) == before
            assert await _outcome(a_forum, finished["id"]) == (ReceivedState.DONE, "already known")

            # Then: the lease runs out while the first run is still at work (its fetch of the Note hangs);
            # a second worker takes the row, and both runs reach the handler at the same moment.
            peer.gate.clear()
            held = peer.create(peer.note("t2", "Fetched by two", audience=general), embed=False)
            assert (await peer.post(http, f"{a_settings.base_url}/inbox", held)).status_code == 202
            first = asyncio.create_task(InboxWorker(federation).run_once())
            await eventually(lambda: peer.fetching(held["object"], 1), every=0.02)
            # Stands in for the five-minute lease running out during the first run.
            async with a_forum.write() as session:
                await session.execute(
                    update(ReceivedActivity)
                    .where(ReceivedActivity.ap_id == held["id"])
                    .values(locked_until=utcnow() - timedelta(seconds=1))
                )
            second = asyncio.create_task(InboxWorker(federation).run_once())
            await eventually(lambda: peer.fetching(held["object"], 2), every=0.02)
            peer.gate.set()
            assert await first == 1 and await second == 1
            after = await _snapshot(a_forum)
            assert after.threads == [*before.threads, held["object"]]
            assert after.posts == before.posts + 1 and after.deliveries == before.deliveries
            state, outcome = await _outcome(a_forum, held["id"])
            assert state == ReceivedState.DONE, outcome


# -- helpers ---------------------------------------------------------------------------------------------------


@dataclass
class _Delivery:
    id: int
    ap_id: str
    state: DeliveryState
    attempts: int
    locked_until: Any


@dataclass
class _Snapshot:
    threads: list[str]
    posts: int
    deliveries: int


def _settings(host: str, port: int, database_url: str, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        base_url=f"http://{host}:{port}",
        secret_key=f"federation-test-{host}",
        federation_allow_private=True,
    )


def _port(settings: Settings) -> int:
    return int(settings.host.rsplit(":", 1)[1])


def _sqlite_copy(template: Path, path: Path) -> str:
    shutil.copy(template, path)
    return f"sqlite+aiosqlite:///{path}"


def _forum(app: Starlette) -> ForumContext:
    forum: ForumContext = app.state.forum
    return forum


async def _member_token(settings: Settings, name: str) -> str:
    member = await make_member(settings, name)
    async with _database(settings) as sessions, sessions() as session, session.begin():
        found = await session.get(type(member), member.id)
        assert found is not None
        _, token = await accounts.create_token(session, found, "tests")
    return token


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


async def _follow_accepted(sessions: async_sessionmaker[AsyncSession]) -> bool:
    async with sessions() as session:
        state = await session.scalar(select(Follow.state).where(Follow.thread_id.is_(None)))
    return state == FollowState.ACCEPTED


async def _tried_once(sessions: async_sessionmaker[AsyncSession], domain: str, count: int) -> list[Delivery] | None:
    """The `count` deliveries of the test's posts, once the first has been tried and all wait behind it."""
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(Delivery)
                .join(OutgoingActivity, OutgoingActivity.id == Delivery.activity_id)
                .where(Delivery.domain == domain, OutgoingActivity.type != "Accept")
            )
        )
    if len(rows) != count or any(row.state != DeliveryState.QUEUED or row.locked_until is not None for row in rows):
        return None
    first = min(rows, key=lambda row: row.id)
    if first.attempts < 1:
        return None
    # A row committed after the first failed is lined up behind it when the worker next looks at the queue.
    return rows if all(row.next_attempt_at >= first.next_attempt_at for row in rows) else None


async def _all_delivered(sessions: async_sessionmaker[AsyncSession], domain: str) -> bool:
    async with sessions() as session:
        states = set(await session.scalars(select(Delivery.state).where(Delivery.domain == domain)))
    return states == {DeliveryState.DELIVERED}


async def _deliveries(
    sessions: async_sessionmaker[AsyncSession], domain: str, *, state: DeliveryState | None = None
) -> list[_Delivery]:
    """Deliveries to one instance, apart from the Accept of the follow (delivered before the test's part)."""
    query = (
        select(Delivery.id, OutgoingActivity.ap_id, Delivery.state, Delivery.attempts, Delivery.locked_until)
        .join(OutgoingActivity, OutgoingActivity.id == Delivery.activity_id)
        .where(Delivery.domain == domain, OutgoingActivity.type != "Accept")
        .order_by(Delivery.id)
    )
    if state is not None:
        query = query.where(Delivery.state == state)
    async with sessions() as session:
        return [_Delivery(*row) for row in (await session.execute(query)).all()]


async def _threads(http: httpx.AsyncClient, category: str) -> list[dict[str, Any]]:
    response = await http.get(f"/api/v1/categories/{category}/threads")
    if response.status_code != 200:
        return []
    threads: list[dict[str, Any]] = response.json()["threads"]
    return threads


async def _threads_if(http: httpx.AsyncClient, category: str, count: int) -> list[dict[str, Any]] | None:
    threads = await _threads(http, category)
    return threads if len(threads) >= count else None


async def _copy_of(
    http: httpx.AsyncClient, category: str, thread: dict[str, Any], count: int
) -> list[dict[str, Any]] | None:
    """The posts of a peer's copy of `thread`, once it has `count` of them."""
    copy = next((t for t in await _threads(http, category) if t["ap_id"] == thread["ap_id"]), None)
    return None if copy is None else await _posts_if(http, None, copy["id"], count)


async def _posts_of(http: httpx.AsyncClient, token: str | None, thread_id: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    response = await http.get(f"/api/v1/threads/{thread_id}", headers=headers)
    assert response.status_code == 200, response.text
    posts: list[dict[str, Any]] = response.json()["posts"]
    return posts


async def _posts_if(
    http: httpx.AsyncClient, token: str | None, thread_id: int, count: int
) -> list[dict[str, Any]] | None:
    posts = await _posts_of(http, token, thread_id)
    return posts if len(posts) >= count else None


async def _received_states(forum: ForumContext) -> dict[ReceivedState, int]:
    async with forum.read() as session:
        rows = await session.execute(select(ReceivedActivity.state, func.count()).group_by(ReceivedActivity.state))
        return {state: count for state, count in rows.all()}


async def _received_count(forum: ForumContext, state: ReceivedState, *, at_least: int) -> bool:
    return (await _received_states(forum)).get(state, 0) >= at_least


async def _processed(forum: ForumContext, ap_id: str) -> bool:
    async with forum.read() as session:
        state = await session.scalar(select(ReceivedActivity.state).where(ReceivedActivity.ap_id == ap_id))
    return state in (ReceivedState.DONE, ReceivedState.REFUSED, ReceivedState.FAILED)


async def _state_is(forum: ForumContext, ap_id: str, state: ReceivedState) -> bool:
    async with forum.read() as session:
        found = await session.scalar(select(ReceivedActivity.state).where(ReceivedActivity.ap_id == ap_id))
    return found == state


async def _outcome(forum: ForumContext, ap_id: str) -> tuple[ReceivedState, str | None]:
    async with forum.read() as session:
        row = (
            await session.execute(
                select(ReceivedActivity.state, ReceivedActivity.outcome).where(ReceivedActivity.ap_id == ap_id)
            )
        ).one()
    return row[0], row[1]


async def _snapshot(forum: ForumContext) -> _Snapshot:
    """What a second run of an activity must not change: the remote threads, the posts, the queued deliveries."""
    async with forum.read() as session:
        threads = (await session.scalars(select(Thread.ap_id).where(Thread.local.is_(False)).order_by(Thread.id))).all()
        posts = await session.scalar(select(func.count()).select_from(Post))
        deliveries = await session.scalar(select(func.count()).select_from(Delivery))
    return _Snapshot([str(t) for t in threads], int(posts or 0), int(deliveries or 0))
