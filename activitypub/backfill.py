"""Backfill of remote threads: the conversation so far, read from the thread's `context` collection.

FEP-7888 / FEP-f228: a thread's posts share a `context` that dereferences to an `OrderedCollection` of
them, paged by `first`/`next`, whose items are posts (ids or objects) or the activities that made them
(`Create`, FEP-171b's `Add`). Jardin and NodeBB serve one per thread; Mastodon 4.5 one per conversation;
Lemmy 1.0 one per post (its comments name their own, serving the same items). Lemmy 0.19 and older
Mastodon have none: their threads grow by `inReplyTo` alone (missing parents are fetched by the content
handler), and a backfill records that there was nothing to read.

A remote thread met for the first time is marked due (`threads.backfill_due_at`) in the transaction that
stores it; `Backfiller`, a background job, takes due threads under a lease, a few at a time, walks each
within `Bounds` (pages, items, a deadline, the guarded client's size and time caps) and stores what is
missing through the content handler's path (same sanitizer, origin and author checks), silently: our
Group announces nothing and nothing is delivered. Each post is stored in a transaction of its own, so a
walk that stops halfway keeps what it read. A thread is walked again only when met again hours later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.actors import as_strings
from activitypub.audiences import domain_of
from activitypub.handlers.base import HandlerFailed, HandlerRefused, Received
from activitypub.handlers.content import MAX_PARENT_DEPTH, POST_TYPES, store_post
from activitypub.protocol.client import FetchError
from activitypub.protocol.deferral import TooManyFetches, with_fetches_deferred
from activitypub.protocol.jsonld import DocumentError
from activitypub.resolver import ResolveError
from activitypub.runtime import Federation
from forum.cache import mark_stale
from forum.models import Follow, Post, Thread
from forum.models.base import utcnow

log = logging.getLogger(__name__)

COLLECTION_TYPES = {"Collection", "OrderedCollection", "CollectionPage", "OrderedCollectionPage"}
# A thread met again sooner than this is not walked again.
AGAIN_AFTER = timedelta(hours=6)
# A claimed thread is someone's for this long; a worker killed mid-walk leaves it to another after it.
LEASE = timedelta(minutes=10)
FETCH_ERRORS = (FetchError, ResolveError, DocumentError, TimeoutError)


@dataclass(frozen=True)
class Bounds:
    """How far one thread's walk goes: pages fetched after the collection, items read, seconds in all."""

    pages: int = 10
    items: int = 500
    deadline: float = 60.0
    # Objects fetched at the same time, from what is mostly one server.
    fetches: int = 4


@dataclass
class Outcome:
    added: int = 0
    known: int = 0
    skipped: int = 0
    pages: int = 0
    # Why the walk ended before the collection did, or why there was nothing to walk.
    stopped: str | None = None

    def __str__(self) -> str:
        counts = f"{self.added} added, {self.known} known, {self.skipped} skipped, {self.pages} pages"
        return f"{counts}; {self.stopped}" if self.stopped else counts


async def request_backfill(session: AsyncSession, thread_id: int) -> bool:
    """Mark a remote thread due, unless it was walked lately or is due already; whether it was marked."""
    now = utcnow()
    marked = await session.execute(
        update(Thread)
        .where(
            Thread.id == thread_id,
            Thread.local.is_(False),
            Thread.backfill_due_at.is_(None),
            (Thread.backfilled_at.is_(None)) | (Thread.backfilled_at < now - AGAIN_AFTER),
        )
        .values(backfill_due_at=now)
        .returning(Thread.id)
    )
    return marked.first() is not None


class Backfiller:
    """The background job: due threads, taken under a lease, at most `concurrency` at once per process."""

    def __init__(self, federation: Federation, *, concurrency: int = 2, bounds: Bounds | None = None) -> None:
        self._federation = federation
        self._concurrency = concurrency
        self._bounds = bounds or Bounds()

    async def run(self, idle: float = 1.0) -> None:
        running: set[asyncio.Task[Outcome]] = set()
        try:
            while True:
                free = self._concurrency - len(running)
                try:
                    claimed = await self._claim(free) if free > 0 else []
                except Exception:  # the marks are durable: log, wait, try again
                    log.exception("claiming threads to backfill failed")
                    claimed = []
                running |= {asyncio.create_task(self.backfill(thread_id)) for thread_id in claimed}
                if not running:
                    await asyncio.sleep(idle)
                    continue
                done, running = await asyncio.wait(running, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:  # recording the end failed: the lease runs out, it runs again
                        log.error("backfill task failed", exc_info=task.exception())
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def run_once(self) -> int:
        """Backfill the threads due now (a batch of `concurrency`); how many were taken."""
        claimed = await self._claim(self._concurrency)
        await asyncio.gather(*(self.backfill(thread_id) for thread_id in claimed))
        return len(claimed)

    async def backfill(self, thread_id: int) -> Outcome:
        """Walk one thread now (claimed or not) and record that it was walked."""
        try:
            outcome = await backfill_thread(self._federation, thread_id, self._bounds)
        except Exception:  # a bug must not make the thread due forever: it is tried again when met again
            log.exception("backfill of thread %s failed", thread_id)
            outcome = Outcome(stopped="internal error")
        async with self._federation.sessions() as session, session.begin():
            await session.execute(
                update(Thread).where(Thread.id == thread_id).values(backfill_due_at=None, backfilled_at=utcnow())
            )
        log.info("backfill of thread %s: %s", thread_id, outcome)
        return outcome

    async def _claim(self, limit: int) -> list[int]:
        now = utcnow()
        async with self._federation.sessions() as session, session.begin():
            due = (
                select(Thread.id)
                .where(Thread.backfill_due_at <= now)
                .order_by(Thread.backfill_due_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list(await session.scalars(due))
            if not ids:
                return []
            # Checked again in the UPDATE: on SQLite, which has no row locks, another process may have won.
            taken = await session.scalars(
                update(Thread)
                .where(Thread.id.in_(ids), Thread.backfill_due_at <= now)
                .values(backfill_due_at=now + LEASE)
                .returning(Thread.id)
            )
            return list(taken)


async def backfill_thread(federation: Federation, thread_id: int, bounds: Bounds | None = None) -> Outcome:
    """Read a remote thread's `context` collection and store the posts it lists that are missing here."""
    async with federation.sessions() as session:
        thread = await session.get(Thread, thread_id)
    if thread is None or thread.local:
        return Outcome(stopped="not a remote thread")
    context = thread.context_id
    if not context or not context.startswith(("https://", "http://")):
        return Outcome(stopped="no context collection: the thread grows by replies alone")
    if domain_of(context) == federation.settings.host.lower():
        return Outcome(stopped="the context is ours")
    walk = _Walk(federation, thread, bounds or Bounds())
    await walk.run(context)
    return walk.outcome


async def first_post_of(federation: Federation, collection: dict[str, Any]) -> dict[str, Any] | None:
    """The top-level post of a context collection (its first item, FEP-f228), fetched; None if it has none.

    NodeBB names a topic by its collection (`/topic/ID`): looking the topic up finds its first post.
    """
    items = _items_of(collection)
    first = _single_link(collection.get("first"))
    if not items and isinstance(first, str) and domain_of(first) == domain_of(str(collection.get("id"))):
        items = _items_of(await federation.resolver.fetch(first))
    elif not items and isinstance(first, dict):
        items = _items_of(first)
    for item in items[:1]:
        object_id, _ = _post_of(item)
        if object_id is not None:
            return await federation.resolver.fetch(object_id)
    return None


@dataclass
class _Item:
    """A post read from the collection, with where it stands in it (the order when times tie)."""

    index: int
    document: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.document["id"])

    @property
    def parent(self) -> str | None:
        return Received.single(self.document.get("inReplyTo"))

    @property
    def context(self) -> str | None:
        return Received.single(self.document.get("context"))

    @property
    def published(self) -> str:
        value = self.document.get("published")
        return value if isinstance(value, str) else "~"  # undated ones last


@dataclass
class _Walk:
    federation: Federation
    thread: Thread
    bounds: Bounds
    outcome: Outcome = field(default_factory=Outcome)
    # Object ids met so far: a collection listing one twice costs one fetch.
    seen: set[str] = field(default_factory=set)
    # Replies whose parent was not stored yet; they wait for it until the end of the walk.
    waiting: list[_Item] = field(default_factory=list)
    added_at: list[datetime] = field(default_factory=list)
    read: int = 0
    origin: str = ""

    def __post_init__(self) -> None:
        self._deadline = asyncio.get_running_loop().time() + self.bounds.deadline
        self._fetching = asyncio.Semaphore(self.bounds.fetches)

    async def run(self, context: str) -> None:
        try:
            collection = await self._fetch(context)
        except FETCH_ERRORS as error:
            self.outcome.stopped = f"the context collection could not be read: {_reason(error)}"
            return
        if collection.get("type") not in COLLECTION_TYPES:
            self.outcome.stopped = f"the context is a {collection.get('type')}, not a collection"
            return
        self.origin = domain_of(str(collection.get("id")))
        visited = {str(collection.get("id")), context}
        page: dict[str, Any] | None = collection
        # A collection links its `first` page; a context that is itself a page links the `next`.
        link = _single_link(collection.get("first") or collection.get("next"))
        while page is not None:
            await self._read(_items_of(page))
            if self.outcome.stopped:
                break
            page = await self._next_page(link, visited)
            link = _single_link(page.get("next")) if page is not None else None
        await self._store_waiting()
        if self.added_at:
            await self._reorder()

    async def _next_page(self, link: str | dict[str, Any] | None, visited: set[str]) -> dict[str, Any] | None:
        if isinstance(link, dict):
            return link  # an embedded page (Mastodon embeds the first)
        if link is None or link in visited:
            return None
        if domain_of(link) != self.origin:
            self.outcome.stopped = f"a page on another host than the collection: {link}"
            return None
        if self.outcome.pages >= self.bounds.pages:
            self.outcome.stopped = f"stopped at the bound of {self.bounds.pages} pages"
            return None
        visited.add(link)
        try:
            page = await self._fetch(link)
        except FETCH_ERRORS as error:
            self.outcome.stopped = f"a page could not be read ({link}): {_reason(error)}"
            return None
        self.outcome.pages += 1
        if page.get("type") not in COLLECTION_TYPES:
            self.outcome.stopped = f"a page is a {page.get('type')}: {link}"
            return None
        return page

    # -- reading -----------------------------------------------------------------------------------

    async def _read(self, items: list[Any]) -> None:
        room = self.bounds.items - self.read
        if len(items) > room:
            items = items[:room]
            self.outcome.stopped = f"stopped at the bound of {self.bounds.items} items"
        self.read += len(items)
        wanted: list[tuple[int, str, dict[str, Any] | None]] = []
        for index, item in enumerate(items, start=self.read - len(items)):
            object_id, inline = _post_of(item)
            if object_id is None or object_id in self.seen:
                self.outcome.skipped += object_id is None
                continue
            self.seen.add(object_id)
            wanted.append((index, object_id, inline))
        known = await self._known({object_id for _, object_id, _ in wanted})
        self.outcome.known += len(known)
        wanted = [entry for entry in wanted if entry[1] not in known]
        documents = await asyncio.gather(*(self._document(object_id, inline) for _, object_id, inline in wanted))
        found = [_Item(index, document) for (index, _, _), document in zip(wanted, documents, strict=True) if document]
        self.outcome.skipped += len(wanted) - len(found)
        await self._store_in_order(found)
        if self._deadline <= asyncio.get_running_loop().time():
            self.outcome.stopped = f"stopped at the deadline of {self.bounds.deadline:g} s"

    async def _known(self, object_ids: set[str]) -> set[str]:
        ours = {object_id for object_id in object_ids if domain_of(object_id) == self._host}
        rest = list(object_ids - ours)
        if not rest:
            return ours
        async with self.federation.sessions() as session:
            posts = await session.scalars(select(Post.ap_id).where(Post.ap_id.in_(rest)))
            threads = await session.scalars(select(Thread.ap_id).where(Thread.ap_id.in_(rest)))
            return ours | {str(ap_id) for ap_id in [*posts, *threads]}

    async def _document(self, object_id: str, inline: dict[str, Any] | None) -> dict[str, Any] | None:
        """The post as its origin vouches for it: embedded by its own server, or fetched from there."""
        if inline is not None and domain_of(object_id) == self.origin and inline.get("attributedTo"):
            document = inline  # a mere reference (id, type, url) is fetched like an id
        else:
            try:
                async with self._fetching:
                    document = await self._fetch(object_id)
            except FETCH_ERRORS as error:
                log.info("backfill: %s could not be fetched: %s", object_id, _reason(error))
                return None
        served = document.get("id")
        if not isinstance(served, str) or domain_of(served) != domain_of(object_id):
            return None  # listed under one host, served as another's: not believed
        return document if document.get("type") in POST_TYPES else None  # Tombstones and the like

    async def _fetch(self, url: str) -> dict[str, Any]:
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError(f"the backfill's deadline of {self.bounds.deadline:g} s passed")
        try:
            async with asyncio.timeout(remaining):
                return await self.federation.resolver.fetch(url)
        except TimeoutError:  # ours: the guarded client reports its own time limit as a FetchError
            raise TimeoutError(f"the backfill's deadline of {self.bounds.deadline:g} s passed") from None

    # -- storing -----------------------------------------------------------------------------------

    async def _store_in_order(self, items: list[_Item]) -> None:
        """Parents before their replies, then oldest first: positions follow the conversation."""
        pending = sorted(items, key=lambda item: (item.published, item.index))
        pending_ids = {item.id for item in pending}
        while pending:
            progress, later = False, []
            for item in pending:
                verdict = await self._place(item)
                if verdict == "store":
                    await self._store(item)
                    pending_ids.discard(item.id)
                    progress = True
                elif verdict == "wait" and item.parent in pending_ids:
                    later.append(item)
                elif verdict == "wait":
                    self.waiting.append(item)
                    pending_ids.discard(item.id)
                else:
                    self.outcome.skipped += 1
                    log.info("backfill of thread %s: %s skipped: %s", self.thread.id, item.id, verdict)
                    pending_ids.discard(item.id)
            if not progress:
                self.waiting += later
                break
            pending = later

    async def _place(self, item: _Item) -> str:
        """`store`, `wait` (its parent is not here yet) or why the item does not belong to this thread."""
        if item.parent is None:
            return "a post that opens another thread"
        context = item.context
        async with self.federation.sessions() as session:
            if context and context != self.thread.context_id:
                other = await session.scalar(select(Thread.id).where(Thread.context_id == context))
                if other is not None:
                    return f"it belongs to the context of thread {other}"
            parent_thread = await _thread_of(session, item.parent)
        if parent_thread is None:
            return "wait"
        if parent_thread != self.thread.id:
            return f"it answers a post of thread {parent_thread}"
        return "store"

    async def _store_waiting(self) -> None:
        """Replies still waiting for their parent at the end of the walk.

        Parents listed on a later page are there now. Parents the collection did not list are fetched, a few
        levels up, for replies that claim this thread's context, and only if the chain ends in this thread.
        What answers the posts so brought is stored last; the rest is skipped.
        """
        waiting, self.waiting = self.waiting, []
        await self._store_in_order(waiting)
        waiting, self.waiting, rest = self.waiting, [], []
        for item in sorted(waiting, key=lambda item: (item.published, item.index)):
            chain = await self._chain(item) if item.context == self.thread.context_id else None
            if chain is None:
                rest.append(item)
                continue
            for link in chain:
                await self._store(link)
        await self._store_in_order(rest)
        self.outcome.skipped += len(self.waiting)
        self.waiting = []

    async def _chain(self, item: _Item) -> list[_Item] | None:
        chain = [item]
        for _ in range(MAX_PARENT_DEPTH):
            parent = chain[0].parent
            if parent is None:
                return None
            async with self.federation.sessions() as session:
                parent_thread = await _thread_of(session, parent)
            if parent_thread is not None:
                return chain if parent_thread == self.thread.id else None
            if parent in self.seen:
                # Listed already and refused (or unreachable): what answers it does not belong either.
                return None
            document = await self._document(parent, None)
            if document is None:
                return None
            self.seen.add(parent)
            chain.insert(0, _Item(item.index, document))
        return None

    async def _store(self, item: _Item) -> None:
        author = Received.single(item.document.get("attributedTo")) or ""

        async def stored() -> tuple[str, datetime | None]:
            async with _transaction(self.federation) as session:
                received = Received(
                    session, self.federation, {"id": f"{item.id}#backfill", "type": "Create", "actor": author}
                )
                result = await store_post(received, item.document, backfilled=True)
                return result, await session.scalar(select(Post.created_at).where(Post.ap_id == item.id))

        try:
            # An unknown author is fetched between two attempts, with no transaction open (as the inbox does).
            result, created = await with_fetches_deferred(stored, max_fetches=MAX_PARENT_DEPTH)
        except (HandlerRefused, HandlerFailed) as refusal:
            self.outcome.skipped += 1
            log.info("backfill of thread %s: %s refused: %s", self.thread.id, item.id, refusal.reason)
            return
        except TooManyFetches as refusal:
            self.outcome.skipped += 1
            log.info("backfill of thread %s: %s refused: %s", self.thread.id, item.id, refusal)
            return
        except IntegrityError:
            # Stored meanwhile by the inbox (the same reply, received as we read it).
            self.outcome.known += 1
            return
        if result == "already known":
            self.outcome.known += 1
        else:
            self.outcome.added += 1
            if created is not None:
                self.added_at.append(created)

    async def _reorder(self) -> None:
        """Posts received before the backfill (a reply that made us fetch the thread) stand before the older
        posts it added: positions are made to follow the posts' dates again, the opening post staying first."""
        async with _transaction(self.federation) as session:
            # Taking the thread's row first: a reply arriving meanwhile waits, then takes the next position.
            count = await session.scalar(
                update(Thread)
                .where(Thread.id == self.thread.id)
                .values(version=Thread.version + 1)
                .returning(Thread.post_count)
            )
            rows = (
                await session.execute(
                    select(Post.id, Post.position, Post.created_at)
                    .where(Post.thread_id == self.thread.id, Post.position > 1)
                    .order_by(Post.position)
                )
            ).all()
            ordered = sorted(rows, key=lambda row: (row.created_at, row.position))
            if [row.id for row in ordered] == [row.id for row in rows] or count != len(rows) + 1:
                return
            # Two steps, so no two posts ever share a position (the unique index checks each row).
            await session.execute(
                update(Post).where(Post.thread_id == self.thread.id, Post.position > 1).values(position=-Post.position)
            )
            await session.execute(
                update(Post), [{"id": row.id, "position": number} for number, row in enumerate(ordered, start=2)]
            )
            await session.execute(update(Thread).where(Thread.id == self.thread.id).values(last_post_id=ordered[-1].id))
            moved = {row.position: number for number, row in enumerate(ordered, start=2)}
            await _keep_what_watchers_read(session, self.thread.id, moved)
            mark_stale(session, f"t:{self.thread.id}", f"c:{self.thread.category_id}")

    @property
    def _host(self) -> str:
        return self.federation.settings.host.lower()


async def _keep_what_watchers_read(session: AsyncSession, thread_id: int, moved: dict[int, int]) -> None:
    """After a reordering (`moved`: old position to new), a watcher who had read up to position k has read the
    posts that stood there; their mark moves to the last of those, so the older posts slotted in before it count
    as read (history, not news) and nothing they had read counts as new again."""
    watchers = (
        await session.execute(
            select(Follow.id, Follow.follower_id, Follow.last_read_position).where(
                Follow.thread_id == thread_id, Follow.last_read_position > 1
            )
        )
    ).all()
    if not watchers:
        return
    furthest = [1] * (max(moved) + 1)  # furthest[k]: the last new position among the posts read up to k
    for position in range(2, len(furthest)):
        furthest[position] = max(furthest[position - 1], moved.get(position, 1))
    changes = [
        {"id": follow_id, "last_read_position": furthest[min(read, len(furthest) - 1)]}
        for follow_id, _follower, read in watchers
        if furthest[min(read, len(furthest) - 1)] != read
    ]
    if changes:
        await session.execute(update(Follow), changes)
        mark_stale(session, *(f"w:{follower}" for _id, follower, _read in watchers))


@asynccontextmanager
async def _transaction(federation: Federation) -> AsyncIterator[AsyncSession]:
    """A transaction of its own; after it commits, the caches it made stale are dropped."""
    async with federation.sessions() as session:
        async with session.begin():
            yield session
            await session.flush()
            stale = await federation.invalidations.flush_pending(session)
        federation.invalidations.drop(stale)


async def _thread_of(session: AsyncSession, ap_id: str) -> int | None:
    """The thread holding the post with this id (a thread's id names its first post)."""
    found = await session.scalar(select(Post.thread_id).where(Post.ap_id == ap_id).limit(1))
    if found is None:
        found = await session.scalar(select(Thread.id).where(Thread.ap_id == ap_id).limit(1))
    return found


def _items_of(page: dict[str, Any]) -> list[Any]:
    items = page.get("orderedItems") or page.get("items") or []
    return items if isinstance(items, list) else [items]


def _single_link(value: object) -> str | dict[str, Any] | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict) and set(value) <= {"id", "type"}:
        value = value.get("id")
    return value if isinstance(value, str | dict) else None


def _post_of(item: object) -> tuple[str | None, dict[str, Any] | None]:
    """(id, embedded object or None) of the post an item names: a post, its id, or the activity that made it."""
    if isinstance(item, dict) and item.get("type") == "Add":
        item = item.get("object")  # FEP-171b: a conversation container adds the activities
    if isinstance(item, dict) and item.get("type") == "Create":
        item = item.get("object")
    if isinstance(item, str):
        return (item, None) if item.startswith(("https://", "http://")) else (None, None)
    if not isinstance(item, dict) or item.get("type") not in POST_TYPES:
        return None, None
    ids = as_strings(item)
    if not ids or not ids[0].startswith(("https://", "http://")):
        return None, None
    return ids[0], item


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__
