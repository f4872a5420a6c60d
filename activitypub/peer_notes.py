"""What the inboxes learn about the peers that write to them, written after the answer, many peers at a time.

Two facts come with every verified request: the form the peer signs with (a peer that signs with RFC 9421
reads it, so our deliveries to it may use it), and that the peer is up (an instance marked unreachable that
writes to us answers again). Each peer is looked at once a minute per form, and not on the request's path:
the request hands its note over and is answered; the notes that gather while one batch is written go in the
next one, with one query for all their instances, as `intake.ReceivedWriter` gathers rows. On SQLite the
usual batch (nothing to change) takes no write lock at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activitypub.resolver import ActivityPubResolver
from forum.models import Instance

log = logging.getLogger(__name__)

NOTE_EVERY = 60.0  # seconds between two looks at the same peer and form
MAX_REMEMBERED = 10_000
MAX_BATCH = 500

_KNOWN = select(Instance.domain, Instance.signature_form, Instance.unreachable).where(
    Instance.domain.in_(bindparam("domains", expanding=True))
)

Note = tuple[str, str]  # the peer's domain, the form of its signature ("cavage" or "rfc9421")


class PeerNotes:
    """Per process: which peers were looked at lately, and the notes waiting to be written."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        resolver: ActivityPubResolver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._resolver = resolver
        self._clock = clock
        self._seen: dict[Note, float] = {}
        self._pending: dict[Note, None] = {}  # a dict keeps arrival order, and each note once
        self._writer: asyncio.Task[None] | None = None

    def note(self, domain: str, form: str) -> None:
        """The peer `domain` signed a request with `form` and was believed. Returns at once."""
        key = (domain, form)
        if key in self._pending or self._clock() - self._seen.get(key, -NOTE_EVERY) < NOTE_EVERY:
            return
        self._pending[key] = None
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="peer-notes-writer")

    async def settled(self) -> None:
        """Wait until every note handed over so far is written (or failed): at shutdown, and in tests."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _write_pending(self) -> None:
        while self._pending:
            batch = list(self._pending)[:MAX_BATCH]
            for key in batch:
                del self._pending[key]
            try:
                await self._write(batch)
            except Exception:  # a note is a hint: the peer's next request, a minute on, brings it again
                log.exception("could not write what %d peers' requests told", len(batch))
                continue
            if len(self._seen) > MAX_REMEMBERED:
                self._seen.clear()
            now = self._clock()
            for key in batch:
                self._seen[key] = now

    async def _write(self, batch: list[Note]) -> None:
        domains = sorted({domain for domain, _form in batch})
        signs_rfc9421 = {domain for domain, form in batch if form == "rfc9421"}
        async with self._sessions() as session, session.begin():
            known = {row.domain: row for row in await session.execute(_KNOWN, {"domains": domains})}
            # SQLite takes its write lock only at the first write, so the usual batch takes none.
            for domain in domains:
                row = known.get(domain)
                if domain in signs_rfc9421 and (row is None or row.signature_form != "rfc9421"):
                    await _remember_rfc9421(session, domain, exists=row is not None)
                if row is not None and row.unreachable:
                    await self._resolver.mark_reachable(session, domain)


# A peer first met through its request has no instance row yet; another process may be adding it now.
_ADD_INSTANCE = {
    dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(Instance.__table__).on_conflict_do_nothing(
        index_elements=["domain"]
    )
    for dialect in (postgresql, sqlite)
}


async def _remember_rfc9421(session: AsyncSession, domain: str, *, exists: bool) -> None:
    if not exists:
        connection = await session.connection()
        row = {"domain": domain, "signature_form": "rfc9421", "failures": 0, "unreachable": False}
        await connection.execute(_ADD_INSTANCE[connection.dialect.name], row)
    await session.execute(
        update(Instance)
        .where(Instance.domain == domain, Instance.signature_form.is_distinct_from("rfc9421"))
        .values(signature_form="rfc9421")
    )
