"""The federation figures of `make bench`, each a ratio of two measurements taken in the same run.

A database of its own (10,000 generated posts, made again on every run since the benchmark writes to
it) gets what a busy federated forum has: 1,000 remote authors on 1,000 instances whose actors (and
keys) are already stored, as the resolver leaves them after a first fetch (the warm key cache a busy
server lives in: nothing is fetched while measuring); and 10,000 remote followers of the `meta`
category on 2,000 instances, half of them Lemmy (they read Groups) and half Mastodon, whose shared
inboxes are served by receiver processes (`tests.bench.peers receive`) on 127.0.0.2 and 127.0.0.3,
1,000 ports each. The server runs with `FORUM_FEDERATION_ALLOW_PRIVATE=1` so it may deliver there.

- documents: the Group and Person actors, a thread's Page, its context collection, a Group's
  followers and outbox, asked for with `Accept: application/activity+json`, against `/bench/trivial`
  of the same server: the same document again and again (the page cache serves what it keeps), then
  a walk over many different ones on a server whose page cache is off (every request a miss);
- inbox: signed `Create(Note)` replies in a local thread, from the 1,000 remote authors, signed before
  the timed part (signing is the sender's cost), posted by `tests.bench.peers send`; accepted (`202`)
  per second and processed (the reply in its thread) per second, against `/bench/accepted`, a route of
  the same app that reads the body and answers `202` (sent five times as many requests, half just before
  each round and half just after, so that it runs about as long, at the same moment); with part
  `inbox-worker`, again with a `forum worker` process beside the server;
- fan-out: a member opens a thread in `meta` through the API; the deliveries (one per shared inbox,
  2,000) per second, from the thread's creation to the last one delivered, against the rate at which
  one core signs with `SigningKey.sign` (measured in this process, in the same run).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from activitypub.protocol.signatures import SigningKey, sign_request
from forum.app import build_context
from forum.config import PROJECT_ROOT, Settings
from forum.db import create_engine
from forum.keys import generate_key_pair
from forum.models import (
    Actor,
    ActorKind,
    Category,
    Delivery,
    DeliveryState,
    Follow,
    FollowState,
    Instance,
    OutgoingActivity,
    Post,
    ReceivedActivity,
    ReceivedState,
)
from forum.services import accounts
from tests.bench import generate
from tests.bench.load import measure
from tests.bench.peers import write_requests
from tests.bench.server import BASE_URL, BenchServer

POSTS = 10_000
SENDERS = 1_000
BARE_REPEATS = 5
SENDER_KEYS = 8
FOLLOWERS = 10_000
INSTANCES = 2_000
RECEIVER_HOSTS = ("127.0.0.2", "127.0.0.3")
FANOUT_CATEGORY = "meta"
INBOX_THREAD_ID = 1  # in `general`, which no remote actor follows: replies to it go nowhere
ACCEPT = "Accept: application/activity+json"
PARTS = ("documents", "inbox", "fanout", "inbox-worker")
GOALS = {"documents": 0.3, "inbox_accepted": 0.3, "inbox_processed": 0.1, "fanout": 0.5}
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


@dataclass(frozen=True)
class FederationPlan:
    seconds: int
    warmup: int
    rounds: int
    connections: int
    tool: str
    inbox_activities: int
    fanout_rounds: int
    # Which of "documents", "inbox", "fanout" to measure (all by default; one while working on it).
    parts: tuple[str, ...] = PARTS


@dataclass(frozen=True)
class Seeded:
    token: str
    sender_ids: list[str]
    sender_pems: list[str]
    follower_group: str
    threads: int
    bench_thread_id: int


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def bench_federation(kind: str, url: str, plan: FederationPlan, work_dir: Path, results_dir: Path) -> dict[str, Any]:
    """All three parts on one database `url` (made again here); the figures and their raw measurements."""
    log(f"\n== federation on {kind}")
    log(f"  generating {POSTS:,} posts")
    made = generate.generate(url, POSTS, reset=True, progress=lambda line: None)
    secret = uuid.uuid4().hex
    with contextlib.ExitStack() as stack:
        receivers = [stack.enter_context(_Receivers(host, INSTANCES // len(RECEIVER_HOSTS))) for host in RECEIVER_HOSTS]
        domains = [f"{r.host}:{port}" for r in receivers for port in r.ports]
        seeded = asyncio.run(_seed(url, work_dir, secret, domains, made))
        env = {"FORUM_FEDERATION_ALLOW_PRIVATE": "1"}

        def server(name: str, extra: dict[str, str], separate_worker: bool = False) -> BenchServer:
            return BenchServer(f"{kind}-federation-{name}", url, made.bench_thread_id, secret, work_dir,
                               log_dir=results_dir, env={**env, **extra}, separate_worker=separate_worker)  # fmt: skip

        main = stack.enter_context(server("cached", {}))
        # Deliveries and received activities are the main server's: this one only serves documents.
        uncached = stack.enter_context(
            server("no-page-cache", {"FORUM_PAGE_CACHE_ENTRIES": "0", "FORUM_RUN_WORKER": "0"})
        )
        found: dict[str, Any] = {}
        if "documents" in plan.parts:
            found["documents"] = bench_documents(main, uncached, seeded, plan)
        if "inbox" in plan.parts:
            found["inbox"] = bench_inbox(main, url, seeded, plan, work_dir)
        if "fanout" in plan.parts:
            found["fanout"] = bench_fanout(main, url, seeded, receivers, plan)
        found["peak_memory_mb"] = {running.name: round(running.peak_memory_mb(), 1) for running in (main, uncached)}
        if "inbox-worker" in plan.parts:
            # The scaled-out shape: `forum serve --no-worker` answers, a `forum worker` process applies. The main
            # server stops first, or its own inbox worker would take part of the work.
            main.stop()
            log("  inbox again, with a `forum worker` process beside a server that runs no background work")
            with server("separate-worker", {}, separate_worker=True) as web:
                found["inbox_worker"] = bench_inbox(web, url, seeded, plan, work_dir)
    return found


# Set-up


class _Receivers:
    """A receiver process on `host` standing for `ports` instances, one per port."""

    def __init__(self, host: str, ports: int) -> None:
        self.host, self.count = host, ports
        self.ports: list[int] = []
        self.control = 0
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> _Receivers:
        command = [
            sys.executable,
            "-m",
            "tests.bench.peers",
            "receive",
            "--host",
            self.host,
            "--ports",
            str(self.count),
        ]
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        found = json.loads(self.process.stdout.readline())
        self.ports, self.control = found["ports"], found["control"]
        return self

    def counts(self) -> dict[int, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}/counts", timeout=10) as answer:
            return {int(port): count for port, count in json.loads(answer.read()).items()}

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


async def _seed(url: str, work_dir: Path, secret: str, domains: list[str], made: generate.Generated) -> Seeded:
    """Remote authors, remote followers of `meta` and their instances, straight into the database."""
    now = datetime.now(UTC)
    keys = [generate_key_pair() for _ in range(SENDER_KEYS)]
    engine = create_engine(url, pool_size=1)
    sender_ids: list[str] = []
    try:
        async with engine.begin() as connection:
            group_id = await connection.scalar(select(Category.actor_id).where(Category.slug == FANOUT_CATEGORY))
            group_ap_id = await connection.scalar(select(Actor.ap_id).where(Actor.id == group_id))
            next_id = int(await connection.scalar(select(func.max(Actor.id))) or 0) + 1
            actors: list[dict[str, Any]] = []
            for n in range(SENDERS):
                domain = f"127.0.0.2:{20_000 + n}"  # never contacted: their keys are already stored
                ap_id = f"http://{domain}/users/author{n}"
                sender_ids.append(ap_id)
                actors.append(_remote_actor(next_id + n, ap_id, f"author{n}", domain, keys[n % SENDER_KEYS][1], now))
            next_id += SENDERS
            follows: list[dict[str, Any]] = []
            per_instance = FOLLOWERS // len(domains)
            for n in range(FOLLOWERS):
                domain = domains[n // per_instance]
                ap_id = f"http://{domain}/users/follower{n}"
                actors.append(_remote_actor(next_id + n, ap_id, f"follower{n}", domain, keys[0][1], now))
                follows.append({"follower_id": next_id + n, "target_id": group_id, "state": FollowState.ACCEPTED,
                                "created_at": now})  # fmt: skip
            for batch in _chunks(actors, 2000):
                await connection.execute(insert(Actor), batch)
            for batch in _chunks(follows, 2000):
                await connection.execute(insert(Follow), batch)
            instances = [
                {"domain": domain, "software": "lemmy" if i % 2 == 0 else "mastodon", "version": "1",
                 "understands_groups": i % 2 == 0, "failures": 0, "unreachable": False,
                 "nodeinfo_fetched_at": now, "created_at": now}
                for i, domain in enumerate(domains)
            ] + [
                {"domain": f"127.0.0.2:{20_000 + n}", "software": "mastodon", "version": "1",
                 "understands_groups": False, "failures": 0, "unreachable": False,
                 "nodeinfo_fetched_at": now, "created_at": now}
                for n in range(SENDERS)
            ]  # fmt: skip
            await connection.execute(insert(Instance), instances)
        if engine.dialect.name == "postgresql":
            async with engine.begin() as connection:
                for table in ("actors", "follows", "instances"):
                    await connection.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
    finally:
        await engine.dispose()
    settings = Settings(data_dir=work_dir, database_url=url, base_url=BASE_URL, secret_key=secret)
    context = build_context(settings)
    try:
        async with context.write() as session:
            admin = await accounts.get_member(session, "member001")
            _token, plain = await accounts.create_token(session, admin, "federation bench")
    finally:
        await context.engine.dispose()
    pems = [keys[n % SENDER_KEYS][0] for n in range(SENDERS)]
    return Seeded(plain, sender_ids, pems, str(group_ap_id), made.threads, made.bench_thread_id)


def _remote_actor(actor_id: int, ap_id: str, name: str, domain: str, public_pem: str, now: datetime) -> dict[str, Any]:
    host = f"http://{domain}"
    return {
        "id": actor_id, "ap_id": ap_id, "local": False, "kind": ActorKind.PERSON, "username": name,
        "username_key": name.lower(), "domain": domain, "display_name": name, "summary": "", "icon_url": None,
        "url": ap_id, "inbox_url": f"{ap_id}/inbox", "outbox_url": f"{ap_id}/outbox",
        "followers_url": f"{ap_id}/followers", "shared_inbox_url": f"{host}/inbox", "public_key_pem": public_pem,
        "private_key_pem": None, "key_id": f"{ap_id}#main-key", "created_at": now, "updated_at": now,
        "fetched_at": now,
    }  # fmt: skip


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# Turns: A, B, A, B… after a warm-up of each; medians


def alternate(
    a: Callable[[], float], b: Callable[[], float], rounds: int, warmup: Callable[[], Any]
) -> tuple[list[float], list[float]]:
    warmup()
    a_rates, b_rates = [], []
    for _ in range(rounds):
        a_rates.append(a())
        b_rates.append(b())
        log(f"    {a_rates[-1]:10,.1f}/s  vs  {b_rates[-1]:10,.1f}/s")
    return a_rates, b_rates


def _figure(a_rates: list[float], b_rates: list[float], **extra: Any) -> dict[str, Any]:
    a, b = statistics.median(a_rates), statistics.median(b_rates)
    return {
        "a_rates": [round(r, 1) for r in a_rates], "b_rates": [round(r, 1) for r in b_rates],
        "a_median": round(a, 1), "b_median": round(b, 1), "ratio": round(a / b, 3) if b else 0.0, **extra,
    }  # fmt: skip


# Documents


def document_paths(seeded: Seeded) -> dict[str, tuple[str, list[str]]]:
    """Each kind of document: the one fetched again and again, and the many walked over."""
    slugs = [slug for slug, _name in generate.CATEGORIES]
    members = [f"member{n:03d}" for n in range(1, generate.MEMBERS + 1)]
    threads = range(1, seeded.threads + 1)
    bench = seeded.bench_thread_id
    return {
        "Group actor": ("/c/general", [f"/c/{slug}" for slug in slugs]),
        "Person actor": ("/u/member002", [f"/u/{name}" for name in members]),
        "thread's Page": (f"/t/{bench}", [f"/t/{n}" for n in threads]),
        "context collection, page 1": (f"/t/{bench}/context?page=1", [f"/t/{n}/context?page=1" for n in threads]),
        "followers collection": (f"/c/{FANOUT_CATEGORY}/followers",
                                 [f"/c/{slug}/followers" for slug in slugs] + [f"/u/{m}/followers" for m in members]),
        "outbox, page 1": ("/c/general/outbox?page=1",
                           [f"/c/{slug}/outbox?page=1" for slug in slugs] + [f"/u/{m}/outbox?page=1" for m in members]),
    }  # fmt: skip


def bench_documents(main: BenchServer, uncached: BenchServer, seeded: Seeded, plan: FederationPlan) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for label, (steady, walk) in document_paths(seeded).items():
        for server, path in ((main, steady), (uncached, walk[0]), (uncached, walk[-1])):
            status, headers, body = server.get(path, {"Accept": "application/activity+json"})
            if status != 200 or not headers.get("content-type", "").startswith("application/activity+json"):
                raise RuntimeError(
                    f"{server.name}: {path} answered {status} {headers.get('content-type')}: {body[:200]!r}"
                )
        log(f"  {label}: {steady} (steady), then {len(walk)} documents walked with the page cache off")

        steady_rates = _documents_in_turns(main, steady, None, plan)
        walk_rates = _documents_in_turns(uncached, "/", walk, plan)
        found[label] = {
            "steady": _figure(*steady_rates, path=steady),
            "walk_cache_off": _figure(*walk_rates, paths=len(walk), first=walk[0]),
        }
        figures = found[label]
        log(f"    steady {figures['steady']['ratio']:.2f}, walk (cache off) {figures['walk_cache_off']['ratio']:.2f}")
    return found


def _load_documents(
    server: BenchServer, path: str, paths: list[str] | None, seconds: int, plan: FederationPlan
) -> float:
    result = measure(f"{server.origin}{path}", seconds=seconds, connections=plan.connections,
                     headers=(ACCEPT,), tool=plan.tool, paths=paths or ())  # fmt: skip
    if result.errors:
        raise RuntimeError(f"{server.name}: {result.errors} errors loading {path}")
    return result.requests_per_second


def _documents_in_turns(
    server: BenchServer, path: str, paths: list[str] | None, plan: FederationPlan
) -> tuple[list[float], list[float]]:
    """`path` (or each of `paths` in turn) against the trivial route of the same server."""
    return alternate(
        functools.partial(_load_documents, server, path, paths, plan.seconds, plan),
        functools.partial(_load_documents, server, "/bench/trivial", None, plan.seconds, plan),
        plan.rounds,
        lambda: (_load_documents(server, path, paths, plan.warmup, plan),
                 _load_documents(server, "/bench/trivial", None, plan.warmup, plan)),
    )  # fmt: skip


# Inbox


def signed_replies(seeded: Seeded, count: int, path: str) -> list[bytes]:
    """`count` raw HTTP requests, each a new reply in the inbox thread by one of the remote authors, signed."""
    # Loading a PEM costs ~30 ms: each of the few key pairs is loaded once, and copied under each author's key id.
    loaded = {pem: SigningKey("bench#key", pem) for pem in set(seeded.sender_pems)}
    keys: dict[int, SigningKey] = {}
    thread = f"{BASE_URL}/t/{INBOX_THREAD_ID}"
    host = BASE_URL.split("://", 1)[1]  # what a peer signs: the forum's public host, not the port it listens on
    now = datetime.now(UTC)
    requests = []
    for n in range(count):
        index = n % len(seeded.sender_ids)
        actor = seeded.sender_ids[index]
        key = keys.get(index)
        if key is None:
            key = keys[index] = copy.copy(loaded[seeded.sender_pems[index]])
            object.__setattr__(key, "key_id", f"{actor}#main-key")
        note_id = f"{actor.rsplit('/users/', 1)[0]}/notes/{uuid.uuid4().hex}"
        activity = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{note_id}/activity", "type": "Create", "actor": actor, "to": [PUBLIC],
            "cc": [f"{BASE_URL}/c/general", f"{actor}/followers"],
            "object": {
                "id": note_id, "type": "Note", "attributedTo": actor, "inReplyTo": thread,
                "to": [PUBLIC], "cc": [f"{BASE_URL}/c/general"], "audience": f"{BASE_URL}/c/general",
                "content": f"<p>Reply {n} from elsewhere: the bees cluster, and <em>so</em> do we.</p>",
                "published": now.isoformat().replace("+00:00", "Z"),
            },
        }  # fmt: skip
        body = json.dumps(activity, separators=(",", ":")).encode()
        headers = sign_request("POST", f"http://{host}/inbox", {"Host": host}, body, key, now=now)
        lines = [f"POST {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items()),
                 "Content-Type: application/activity+json", f"Content-Length: {len(body)}", "", ""]  # fmt: skip
        requests.append("\r\n".join(lines).encode("latin-1") + body)
    return requests


def _send(server: BenchServer, requests: list[bytes], connections: int, scratch: Path) -> dict[str, Any]:
    path = scratch / f"requests-{uuid.uuid4().hex}.bin"
    write_requests(path, requests)
    command = [sys.executable, "-m", "tests.bench.peers", "send", "--port", str(server.port),
               "--requests", str(path), "--connections", str(connections)]  # fmt: skip
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=300)
    path.unlink()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bench_inbox(server: BenchServer, url: str, seeded: Seeded, plan: FederationPlan, work_dir: Path) -> dict[str, Any]:
    count = plan.inbox_activities
    rounds = plan.rounds
    log(f"  inbox: signing {count * (rounds + 1):,} replies from {SENDERS:,} remote authors (before the timed part)")
    started = time.monotonic()
    inbox = [signed_replies(seeded, count, "/inbox") for _ in range(rounds + 1)]
    # The same bytes to a route that checks and keeps nothing, sent just before each inbox round and just after
    # it (BARE_REPEATS times over in all): at ten times the inbox's rate, one set of them would last a tenth of
    # a second, a hiccup of the machine would be the figure, and the machine's speed drifts within minutes.
    bare = [request.replace(b"POST /inbox ", b"POST /bench/accepted ", 1) for request in inbox[0]] * BARE_REPEATS
    bare_halves = (bare[: len(bare) // 2], bare[len(bare) // 2 :])
    log(f"    signed in {time.monotonic() - started:.1f} s; then {rounds} rounds of {count:,} each way, in turns")
    accepted: list[float] = []
    processed: list[float] = []
    bare_rates: list[float] = []
    rounds_found: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="jardin-inbox-") as scratch:
        for n, requests in enumerate(inbox):
            bare_before = _send(server, bare_halves[0], plan.connections, Path(scratch))
            before = asyncio.run(_inbox_state(url))
            sent = _send(server, requests, plan.connections, Path(scratch))
            if sent["statuses"] != {"202": count}:
                raise RuntimeError(f"the inbox answered {sent['statuses']}; see {server.log_path}")
            # A shared machine has been seen processing ~20 activities a second: wait long enough for that.
            done_at = _wait_processed(url, before["posts"] + count, timeout=max(120.0, count / 10))
            after = asyncio.run(_inbox_state(url))
            if after["posts"] != before["posts"] + count or after["not_done"]:
                raise RuntimeError(f"processing incomplete: {before} -> {after}")
            bare_after = _send(server, bare_halves[1], plan.connections, Path(scratch))
            for half, bare_sent in zip(bare_halves, (bare_before, bare_after), strict=True):
                if bare_sent["statuses"] != {"202": len(half)}:
                    raise RuntimeError(f"/bench/accepted answered {bare_sent['statuses']}")
            round_found = {
                "accepted_per_second": count / sent["seconds"],
                "processed_per_second": count / (done_at - sent["started"]),
                "bare_per_second": len(bare) / (bare_before["seconds"] + bare_after["seconds"]),
                "accept_seconds": sent["seconds"],
                "process_seconds": round(done_at - sent["started"], 3),
            }
            label = "warm-up" if n == 0 else f"round {n}"
            log(
                f"    {label}: accepted {round_found['accepted_per_second']:,.0f}/s, processed "
                f"{round_found['processed_per_second']:,.0f}/s; bare 202 {round_found['bare_per_second']:,.0f}/s"
            )
            if n:
                accepted.append(round_found["accepted_per_second"])
                processed.append(round_found["processed_per_second"])
                bare_rates.append(round_found["bare_per_second"])
                rounds_found.append(round_found)
    return {
        "activities_per_round": count,
        "key_cache": "remote actors pre-loaded in the database (warm key cache)",
        "accepted": _figure(accepted, bare_rates),
        "processed": _figure(processed, bare_rates),
        "rounds": rounds_found,
    }


async def _inbox_state(url: str) -> dict[str, int]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            posts = await connection.scalar(
                select(func.count()).select_from(Post).where(Post.thread_id == INBOX_THREAD_ID)
            )
            not_done = await connection.scalar(
                select(func.count()).select_from(ReceivedActivity).where(ReceivedActivity.state != ReceivedState.DONE)
            )
    finally:
        await engine.dispose()
    return {"posts": int(posts or 0), "not_done": int(not_done or 0)}


def _wait_processed(url: str, posts: int, timeout: float) -> float:
    """Wall-clock time at which the thread held `posts` posts (polled every 20 ms)."""

    async def wait() -> float:
        engine = create_engine(url, pool_size=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                async with engine.connect() as connection:
                    now = await connection.scalar(
                        select(func.count()).select_from(Post).where(Post.thread_id == INBOX_THREAD_ID)
                    )
                if int(now or 0) >= posts:
                    return time.time()
                await asyncio.sleep(0.02)
        finally:
            await engine.dispose()
        raise RuntimeError(f"the inbox thread did not reach {posts} posts within {timeout:.0f} s")

    return asyncio.run(wait())


# Fan-out


def sign_rate(pem: str, seconds: float = 1.5) -> float:
    """Signatures per second of one core with SigningKey.sign, over a message like a delivery's."""
    key = SigningKey("http://127.0.0.1:8000/c/meta#main-key", pem)
    message = (
        b"(request-target): post /inbox\nhost: 127.0.0.2:43210\ndate: Mon, 23 Nov 2026 14:00:00 GMT\n"
        b"digest: SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    )
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(50):
            key.sign(message)
        count += 50
    return count / (time.perf_counter() - started)


def bench_fanout(
    server: BenchServer, url: str, seeded: Seeded, receivers: list[_Receivers], plan: FederationPlan
) -> dict[str, Any]:
    pem = asyncio.run(_group_key(url))
    log(f"  fan-out: a new thread in {FANOUT_CATEGORY} to {FOLLOWERS:,} followers on {INSTANCES:,} instances")
    rates: list[float] = []
    signs: list[float] = []
    rounds: list[dict[str, Any]] = []
    for n in range(plan.fanout_rounds + 1):
        signs.append(sign_rate(pem))
        before = sum(sum(r.counts().values()) for r in receivers)
        created = _open_thread(server, seeded.token, n)
        found = _wait_delivered(url, created, expected=INSTANCES, timeout=120)
        time.sleep(0.2)  # the last answers' counts
        counts = [count for r in receivers for count in r.counts().values()]
        requests = sum(counts) - before
        found.update(requests=requests, sign_rate=round(signs[-1], 1))
        label = "warm-up" if n == 0 else f"round {n}"
        log(
            f"    {label}: {found['delivered']:,} delivered, {requests:,} requests, {found['per_second']:,.0f}/s "
            f"(first to last delivery {found['spread_per_second']:,.0f}/s); one core signs {signs[-1]:,.0f}/s"
        )
        if found["delivered"] != INSTANCES or requests != INSTANCES:
            raise RuntimeError(
                f"fan-out sent {requests} requests, {found['delivered']} delivered; expected {INSTANCES}"
            )
        if n:
            rates.append(found["per_second"])
            rounds.append(found)
    per_instance = {count for count in counts}
    return {
        "followers": FOLLOWERS, "instances": INSTANCES, "requests_per_round": INSTANCES,
        "requests_per_instance_total": sorted(per_instance),
        "deliveries": _figure(rates, signs[1:]), "rounds": rounds,
    }  # fmt: skip


async def _group_key(url: str) -> str:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            pem = await connection.scalar(
                select(Actor.private_key_pem)
                .join(Category, Category.actor_id == Actor.id)
                .where(Category.slug == FANOUT_CATEGORY)
            )
    finally:
        await engine.dispose()
    assert isinstance(pem, str)
    return pem


def _open_thread(server: BenchServer, token: str, n: int) -> float:
    """Opens a thread through the API; the wall-clock time just before asking."""
    body = json.dumps({"category": FANOUT_CATEGORY, "title": f"Fan-out {n}: where do the bees go?",
                       "body": "They cluster, and keep the queen warm."}).encode()  # fmt: skip
    request = urllib.request.Request(
        f"{server.origin}/api/v1/threads", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    started = time.time()
    with urllib.request.urlopen(request, timeout=30) as answer:
        if answer.status != 201:
            raise RuntimeError(f"the API answered {answer.status}")
    log(f"    the API answered in {(time.time() - started) * 1000:,.0f} ms")
    return started


def _wait_delivered(url: str, since: float, expected: int, timeout: float) -> dict[str, Any]:
    async def wait() -> dict[str, Any]:
        engine = create_engine(url, pool_size=1)
        moment = datetime.fromtimestamp(since, UTC) - timedelta(seconds=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                async with engine.connect() as connection:
                    activity_ids = list(await connection.scalars(
                        select(OutgoingActivity.id).where(OutgoingActivity.created_at >= moment)
                    ))  # fmt: skip
                    row = (await connection.execute(
                        select(func.count(), func.min(Delivery.delivered_at), func.max(Delivery.delivered_at))
                        .where(Delivery.activity_id.in_(activity_ids), Delivery.state == DeliveryState.DELIVERED)
                    )).one()  # fmt: skip
                    total = await connection.scalar(
                        select(func.count()).select_from(Delivery).where(Delivery.activity_id.in_(activity_ids))
                    )
                delivered = int(row[0] or 0)
                if (total and delivered >= int(total)) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        finally:
            await engine.dispose()
        first, last = row[1], row[2]
        if last is None:
            return {"delivered": delivered, "queued": int(total or 0), "per_second": 0.0, "spread_per_second": 0.0}
        last_at = last.replace(tzinfo=UTC).timestamp()
        first_at = (first or last).replace(tzinfo=UTC).timestamp()
        return {
            "delivered": delivered, "queued": int(total or 0), "seconds": round(last_at - since, 3),
            "per_second": round(delivered / (last_at - since), 1),
            "spread_per_second": round(delivered / max(last_at - first_at, 1e-3), 1),
        }  # fmt: skip

    return asyncio.run(wait())


# The report


def markdown(found: dict[str, dict[str, Any]]) -> str:
    """The federation table: one column per database measured."""
    measured = {name: data for name, data in found.items() if "skipped" not in data}
    if not measured:
        return "No federation figure was measured."
    titles = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    header = ["figure", *(titles[name] for name in measured), "goal"]
    rows: list[list[str]] = []
    first = next(iter(measured.values()))
    for label in first.get("documents", {}):
        for mode, title in (("steady", "same document again (page cache)"), ("walk_cache_off", "walk, page cache off")):
            rows.append([f"{label}, {title} / trivial route",
                         *(cell(d["documents"][label][mode], GOALS["documents"]) for d in measured.values()),
                         f"≥ {GOALS['documents']}"])  # fmt: skip
    if "inbox" in first:
        _inbox_rows(rows, measured, "inbox", "Inbox")
    if "inbox_worker" in first:
        _inbox_rows(rows, measured, "inbox_worker", "Inbox, `forum worker` beside `forum serve --no-worker`")
    if "fanout" in first:
        _fanout_rows(rows, measured)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def cell(figure: dict[str, Any], goal: float) -> str:
    mark = "✓" if figure["ratio"] >= goal else "✗"
    return f"{figure['ratio']:.2f} {mark} ({figure['a_median']:,.0f} / {figure['b_median']:,.0f} /s)"


def _inbox_rows(rows: list[list[str]], measured: dict[str, dict[str, Any]], part: str, title: str) -> None:
    rows.append([f"{title}: signed `Create(Note)` replies accepted (`202`) / bare `202` route",
                 *(cell(d[part]["accepted"], GOALS["inbox_accepted"]) for d in measured.values()),
                 f"≥ {GOALS['inbox_accepted']}"])  # fmt: skip
    rows.append([f"{title}: … processed (the reply in its thread) / bare `202` route",
                 *(cell(d[part]["processed"], GOALS["inbox_processed"]) for d in measured.values()),
                 f"≥ {GOALS['inbox_processed']}"])  # fmt: skip


def _fanout_rows(rows: list[list[str]], measured: dict[str, dict[str, Any]]) -> None:
    rows.append([f"Fan-out of a new thread to {FOLLOWERS:,} followers on {INSTANCES:,} instances:"
                 " deliveries / RSA signatures of one core",
                 *(cell(d["fanout"]["deliveries"], GOALS["fanout"]) for d in measured.values()),
                 f"≥ {GOALS['fanout']}"])  # fmt: skip
    rows.append(["Fan-out: requests sent per new thread",
                 *(f"{d['fanout']['requests_per_round']:,} (one per shared inbox)" for d in measured.values()),
                 f"{INSTANCES:,}"])  # fmt: skip


def default_plan(
    quick: bool, seconds: int | None, rounds: int | None, connections: int, tool: str, parts: tuple[str, ...] = PARTS
) -> FederationPlan:
    return FederationPlan(
        seconds=seconds or (2 if quick else 3),
        warmup=1,
        rounds=rounds or (2 if quick else 3),
        connections=connections,
        tool=tool,
        inbox_activities=1_000 if quick else 3_000,
        fanout_rounds=2 if quick else 3,
        parts=parts,
    )


__all__ = ["GOALS", "FederationPlan", "bench_federation", "default_plan", "markdown"]
