"""Benchmark data: fills a migrated database with members, categories, threads and posts, fast.

`python -m tests.bench.generate --posts 1000000 --database-url URL [--reset]`

Rows go in through SQLAlchemy Core `insert()` with thousands of rows per statement (executemany), not
the ORM (issue 2 measured ~3,500 rows/s with `add_all` against ~150,000 with Core). Ids are assigned
here, so every `ap_id`, `position`, `last_post_id` and counter is written once and right, as the
services would have left them.

Two shortcuts a real forum never takes, for speed: every generated actor (members and categories) shares
one RSA key pair, and every member one argon2 hash of `BENCH_PASSWORD`. Post bodies come from a small
corpus of Markdown texts, each rendered once through `forum.markup.render`.

The thread the benchmark reads (`bench_thread_id`, exactly 50 posts, in the middle of the id range) and
the member who reads it are recorded in the instance setting `bench`, so a database can be reused.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from forum import markup, migrate, passwords
from forum.db import create_engine
from forum.keys import generate_key_pair
from forum.models import Actor, ActorKind, Category, InstanceSetting, Member, Post, Thread

GENERATOR_VERSION = 1
BENCH_SETTING = "bench"
BENCH_PASSWORD = "bench password, not a secret"
BENCH_THREAD_POSTS = 50
VIEWER = "member002"
MEMBERS = 200
CATEGORIES = (
    ("general", "General"),
    ("help", "Help and questions"),
    ("development", "Development"),
    ("gardening", "Gardening"),
    ("meta", "About this forum"),
)
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
MEAN_THREAD_LENGTH = 50
BATCH_ROWS = 5000
SEED = 2


@dataclass(frozen=True)
class Generated:
    """What a generation made; also stored as the `bench` instance setting."""

    version: int
    posts: int
    threads: int
    members: int
    bench_thread_id: int
    viewer: str
    seconds: float
    rows: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def generate(
    database_url: str,
    posts: int,
    *,
    reset: bool = False,
    base_url: str = DEFAULT_BASE_URL,
    progress: Callable[[str], None] = print,
) -> Generated:
    """Migrate `database_url` and fill it with `posts` posts; refuses a database that has posts unless `reset`."""
    if posts < BENCH_THREAD_POSTS:
        raise ValueError(f"generate at least {BENCH_THREAD_POSTS} posts")
    if reset:
        asyncio.run(_reset(database_url))
    migrate.upgrade(database_url)
    return asyncio.run(_fill(database_url, posts, base_url, progress))


async def stored(database_url: str) -> Generated | None:
    """The record of an earlier generation in this database, if any."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            value = await connection.scalar(select(InstanceSetting.value).where(InstanceSetting.key == BENCH_SETTING))
    except Exception:  # no database or no schema yet: nothing was generated
        return None
    finally:
        await engine.dispose()
    if not isinstance(value, dict) or value.get("version") != GENERATOR_VERSION:
        return None
    return Generated(**value)


async def _reset(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def _fill(database_url: str, posts: int, base_url: str, progress: Callable[[str], None]) -> Generated:
    engine = create_engine(database_url, pool_size=1)
    if engine.dialect.name == "sqlite":
        # Throw-away data: no fsync while filling (a third faster); a crash means generating again.
        event.listen(engine.sync_engine, "connect", _sqlite_fast_writes)
    try:
        async with engine.connect() as connection:
            if await connection.scalar(select(func.count()).select_from(Post)):
                raise SystemExit("the database already holds posts; pass --reset to start again")
        return await _Filler(engine, posts, base_url, progress).run()
    finally:
        await engine.dispose()


def _sqlite_fast_writes(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


class _Filler:
    def __init__(self, engine: AsyncEngine, posts: int, base_url: str, progress: Callable[[str], None]) -> None:
        self.engine = engine
        self.posts = posts
        self.base_url = base_url
        self.progress = progress
        self.rng = random.Random(SEED)
        self.rows = 0
        self.started = time.perf_counter()
        self.start_time = datetime(2024, 1, 1, tzinfo=UTC)

    async def run(self) -> Generated:
        lengths, bench_index = thread_lengths(self.posts, self.rng)
        corpus = _corpus(self.rng)
        self.progress(
            f"generating {self.posts:,} posts in {len(lengths):,} threads, {MEMBERS} members, "
            f"{len(CATEGORIES)} categories"
        )
        member_actor_ids, category_ids = await self._people_and_places()
        await self._threads_and_posts(lengths, bench_index, member_actor_ids, category_ids, corpus)
        await self._finish()
        seconds = time.perf_counter() - self.started
        generated = Generated(
            version=GENERATOR_VERSION, posts=self.posts, threads=len(lengths), members=MEMBERS,
            bench_thread_id=bench_index + 1, viewer=VIEWER, seconds=round(seconds, 2), rows=self.rows,
        )  # fmt: skip
        async with self.engine.begin() as connection:
            await connection.execute(insert(InstanceSetting), [{"key": BENCH_SETTING, "value": asdict(generated)}])
        self.progress(
            f"done: {self.rows:,} rows in {seconds:.1f} s ({generated.rows_per_second:,.0f} rows/s); "
            f"benchmark thread /t/{generated.bench_thread_id}, read by {VIEWER}"
        )
        return generated

    async def _people_and_places(self) -> tuple[list[int], list[int]]:
        private_pem, public_pem = generate_key_pair()  # one pair for every generated actor
        password_hash = passwords.hash_password(BENCH_PASSWORD)
        names = [f"member{n:03d}" for n in range(1, MEMBERS + 1)]
        actors = [
            self._actor(i, ActorKind.PERSON, name, f"Member {i}" if i % 3 else "", private_pem, public_pem)
            for i, name in enumerate(names, start=1)
        ]
        offset = len(actors)
        actors += [
            self._actor(offset + i, ActorKind.GROUP, slug, name, private_pem, public_pem)
            for i, (slug, name) in enumerate(CATEGORIES, start=1)
        ]
        members = [
            {
                "id": i, "actor_id": i, "email": f"{name}@example.org", "password_hash": password_hash,
                "role": "admin" if i == 1 else "member", "language": None, "theme": None,
                "created_at": self.start_time, "last_login_at": None,
            }
            for i, name in enumerate(names, start=1)
        ]  # fmt: skip
        async with self.engine.begin() as connection:
            await self._insert(connection, Actor, actors)
            await self._insert(connection, Member, members)
        return list(range(1, MEMBERS + 1)), [offset + i for i in range(1, len(CATEGORIES) + 1)]

    def _actor(
        self, actor_id: int, kind: ActorKind, name: str, display_name: str, private_pem: str, public_pem: str
    ) -> dict[str, Any]:
        ap_id = f"{self.base_url}/{'u' if kind is ActorKind.PERSON else 'c'}/{name}"
        return {
            "id": actor_id, "ap_id": ap_id, "local": True, "kind": kind, "username": name,
            "username_key": name.lower(), "domain": "", "display_name": display_name, "summary": "",
            "icon_url": None, "url": ap_id, "inbox_url": f"{ap_id}/inbox", "outbox_url": f"{ap_id}/outbox",
            "followers_url": f"{ap_id}/followers", "shared_inbox_url": f"{self.base_url}/inbox",
            "public_key_pem": public_pem, "private_key_pem": private_pem, "key_id": f"{ap_id}#main-key",
            "created_at": self.start_time, "updated_at": self.start_time, "fetched_at": None,
        }  # fmt: skip

    async def _threads_and_posts(
        self,
        lengths: list[int],
        bench_index: int,
        member_actor_ids: list[int],
        category_actor_ids: list[int],
        corpus: list[tuple[str, str]],
    ) -> None:
        spacing = timedelta(minutes=3)
        per_thread = timedelta(days=365) / len(lengths)
        category_of = [index % len(CATEGORIES) + 1 for index in range(len(lengths))]
        viewer_actor = member_actor_ids[int(VIEWER.removeprefix("member")) - 1]
        threads: list[dict[str, Any]] = []
        first_post_id = 1
        for index, length in enumerate(lengths):
            thread_id = index + 1
            created = self.start_time + per_thread * index
            threads.append({
                "id": thread_id, "category_id": category_of[index],
                "author_id": member_actor_ids[self.rng.randrange(MEMBERS)],
                "ap_id": f"{self.base_url}/t/{thread_id}", "context_id": f"{self.base_url}/t/{thread_id}/context",
                "local": True, "title": _title(self.rng), "pinned": False, "locked": False, "archived": False,
                "post_count": length, "version": 0, "created_at": created,
                "last_activity_at": created + spacing * (length - 1), "last_post_id": first_post_id + length - 1,
            })  # fmt: skip
            first_post_id += length
        categories = [
            {
                "id": n, "actor_id": category_actor_ids[n - 1], "slug": slug, "name": name,
                "description": f"Threads about {name.lower()}.", "position": n, "private": False,
                "local": True, "created_at": self.start_time,
                "thread_count": sum(1 for c in category_of if c == n),
                "post_count": sum(length for length, c in zip(lengths, category_of, strict=True) if c == n),
                "last_activity_at": max(
                    t["last_activity_at"] for t in threads if t["category_id"] == n
                ) if n in category_of else None,
            }
            for n, (slug, name) in enumerate(CATEGORIES, start=1)
        ]  # fmt: skip
        async with self.engine.begin() as connection:
            await self._insert(connection, Category, categories)
            for batch in _batches(threads, BATCH_ROWS):
                await self._insert(connection, Thread, batch)

        def rows() -> Iterator[dict[str, Any]]:
            post_id = 0
            for thread in threads:
                thread_first = post_id + 1
                is_bench = thread["id"] == bench_index + 1
                for position in range(1, thread["post_count"] + 1):
                    post_id += 1
                    source, html = corpus[self.rng.randrange(len(corpus))]
                    author = thread["author_id"] if position == 1 else member_actor_ids[self.rng.randrange(MEMBERS)]
                    if is_bench and position % 7 == 3:  # the reader's own posts show their Edit links
                        author = viewer_actor
                    replies_to = (
                        self.rng.randrange(thread_first, post_id) if position > 1 and self.rng.random() < 0.25 else None
                    )
                    yield {
                        "id": post_id, "thread_id": thread["id"], "position": position, "author_id": author,
                        "ap_id": f"{self.base_url}/p/{post_id}", "local": True, "in_reply_to_id": replies_to,
                        "source": source, "html": html,
                        "created_at": thread["created_at"] + spacing * (position - 1),
                        "edited_at": None, "deleted_at": None, "removed_at": None, "revision_count": 0,
                    }  # fmt: skip

        step = max(BATCH_ROWS, self.posts // 20)
        next_report = step
        done = 0
        for batch in _batches(rows(), BATCH_ROWS):
            async with self.engine.begin() as connection:
                await self._insert(connection, Post, batch)
            done += len(batch)
            if done >= next_report or done == self.posts:
                elapsed = time.perf_counter() - self.started
                self.progress(
                    f"  {done:>10,} / {self.posts:,} posts ({done * 100 // self.posts:3d}%)"
                    f"  {self.rows / elapsed:,.0f} rows/s"
                )
                next_report += step

    async def _insert(self, connection: AsyncConnection, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await connection.execute(insert(model), list(rows))
            self.rows += len(rows)

    async def _finish(self) -> None:
        """Sequences past the ids given here (PostgreSQL); fresh planner statistics, as autovacuum would."""
        if self.engine.dialect.name == "postgresql":
            async with self.engine.begin() as connection:
                for table in ("actors", "members", "categories", "threads", "posts"):
                    await connection.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT coalesce(max(id), 1) FROM {table}))"
                        )
                    )
            async with self.engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text("VACUUM ANALYZE"))
        else:
            async with self.engine.connect() as connection:
                await connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def thread_lengths(posts: int, rng: random.Random) -> tuple[list[int], int]:
    """Varied thread lengths (many short, a few long, ~50 on average) adding up to `posts`, and the
    index of the thread of exactly 50 posts, in the middle, that the benchmark reads."""
    remaining = posts - BENCH_THREAD_POSTS
    lengths: list[int] = []
    while remaining > 0:
        length = min(remaining, max(1, min(500, round(rng.expovariate(1 / MEAN_THREAD_LENGTH)))))
        lengths.append(length)
        remaining -= length
    middle = len(lengths) // 2
    lengths.insert(middle, BENCH_THREAD_POSTS)
    return lengths, middle


_SENTENCES = (
    "I moved the seedlings to the cold frame last week and the difference is already visible.",
    "The documentation says the option is deprecated, but nothing replaces it yet.",
    "We tried the same thing on the community plot, with mixed results at first.",
    "If you keep the soil moist but not wet, the roots settle within a fortnight.",
    "Has anyone measured how long the migration takes on a database this size?",
    "The second approach is slower to set up, yet far easier to keep running.",
    "Thanks for the detailed write-up, it answered most of my questions.",
    "My guess is that the cache never sees the change because the key differs.",
    "Compost that smells sour usually needs more brown material and more air.",
    "I'd rather keep the defaults and document the one case where they fall short.",
    "After the upgrade, the page loads noticeably faster on the old laptop.",
    "For what it's worth, the French translation reads better than the original.",
)
_QUOTES = (
    "> The best time to plant a tree was twenty years ago.\n> The second best time is now.",
    "> Make it work, make it right, make it fast.",
    "> Reading a page writes nothing to the database.",
)
_CODE = (
    "```python\nasync def handler(request):\n    page = await cache.get(key)\n    return page or render(request)\n```",
    "```sh\nforum db upgrade && forum serve --workers 2\n```",
    "Try `PRAGMA journal_mode=WAL;` and watch the `-wal` file grow.",
)
_LISTS = (
    "- sow in March\n- prick out in April\n- plant out after the last frost",
    "1. back up the database\n2. run the migration\n3. restart every process",
    "* **pros**: simple, fast\n* **cons**: one more moving part",
)


def _corpus(rng: random.Random, size: int = 40) -> list[tuple[str, str]]:
    """Distinct Markdown bodies of a few paragraphs with a quote, code or a list, and their HTML."""
    bodies = []
    for n in range(size):
        paragraphs = [" ".join(rng.sample(_SENTENCES, rng.randint(1, 2))) for _ in range(rng.randint(1, 2))]
        extra = (_QUOTES, _CODE, _LISTS)[n % 3]
        paragraphs.insert(rng.randint(0, len(paragraphs)), rng.choice(extra))
        if n % 4 == 0:
            paragraphs.append(f"More in [the guide](https://example.org/guide/{n}), and ask @member{n + 1:03d}.")
        source = "\n\n".join(paragraphs)
        bodies.append((source, markup.render(source).html))
    return bodies


_TITLE_WORDS = ("tomatoes", "migration", "compost", "release", "themes", "caching", "seedlings", "backups")


def _title(rng: random.Random) -> str:
    return f"{rng.choice(('About', 'Help with', 'Ideas for', 'Trouble with'))} {rng.choice(_TITLE_WORDS)}"


def _batches(rows: Iterator[dict[str, Any]] | list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, required=True, help="how many posts (threads follow: ~1 per 50)")
    parser.add_argument("--database-url", required=True, help="sqlite+aiosqlite:///… or postgresql+asyncpg://…")
    parser.add_argument("--reset", action="store_true", help="delete what the database holds first")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="origin of the generated ap_ids")
    args = parser.parse_args(argv)
    try:
        generate(args.database_url, args.posts, reset=args.reset, base_url=args.base_url,
                 progress=lambda line: print(line, flush=True))  # fmt: skip
    except ValueError as error:
        print(f"generate: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
