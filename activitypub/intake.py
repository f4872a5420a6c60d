"""Group commit of received activities: what the inbox stores before answering `202`.

Every verified activity must be committed before its `202` (a peer that got one never sends it
again), and a commit costs about a millisecond on SQLite, where writers also queue for one lock. So
concurrent inbox requests hand their rows to one `ReceivedWriter`, which writes whatever has gathered
in one transaction and then wakes each of them: while one batch commits, the next one fills. A
request waits for at most the commit before its own and its own; nothing waits on a timer. A batch the
database refuses is written again one row at a time, so that one bad row fails its own request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Table, Text, bindparam, cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from forum.models import ReceivedActivity, ReceivedState
from forum.models.base import utcnow
from forum.sqlite_driver import write_committed

log = logging.getLogger(__name__)

MAX_BATCH = 500


class ReceivedWriter:
    """Stores rows of `received_activities`, the same `ap_id` twice staying one row."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self._max_batch = max_batch
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, sessions: async_sessionmaker[AsyncSession], row: dict[str, Any]) -> None:
        """Returns once `row` is committed (or was there already); raises what the commit raised. Its
        `document` is a JSON object, or the text of one."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(sessions), name="received-activities-writer")
        # A request cancelled meanwhile (the peer hung up) must not cancel the others' commit.
        await asyncio.shield(future)

    async def drain(self) -> None:
        """Wait for the commit under way, if any: at shutdown, before the engine's connections are closed (a
        request whose peer hung up leaves its batch committing after the request itself is gone)."""
        if self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _write(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                await _insert(sessions, [row for row, _future in batch])
            except Exception as error:
                if len(batch) == 1:
                    _settle(batch, error)
                    continue
                # One row the database refuses must not cost the others their place: each is written alone,
                # and only the requests whose own row fails answer the failure (a 500).
                log.warning("storing %d received activities together failed (%s); storing each alone", len(batch),
                            error)  # fmt: skip
                for one in batch:
                    try:
                        await _insert(sessions, [one[0]])
                    except Exception as alone:
                        _settle([one], alone)
                    else:
                        _settle([one], None)
                continue
            _settle(batch, None)


def _settle(batch: list[tuple[dict[str, Any], asyncio.Future[None]]], error: Exception | None) -> None:
    for _row, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


# The group commit's INSERT, SQLAlchemy's statement compiled once per database, and written below SQLAlchemy's
# execution: under load a batch holds a few rows, and an ORM session, its transaction and SQLAlchemy's
# execution cost more of the event loop than the rows (3-row batches, in process: about 1.0-1.25 ms against
# 0.30-0.45 ms on SQLite, 0.95-1.5 ms against 0.58-0.91 ms on PostgreSQL). The values are bound the way the
# columns' own types bind them. The same activity arriving through two inboxes at once (or already stored):
# one row. The document is bound as JSON text: an activity kept as received is the body's own text, never
# encoded again.
_TABLE = typing.cast(Table, ReceivedActivity.__table__)
_DOCUMENT_TEXT = bindparam("document", type_=Text)
_VALUES: dict[str, Any] = {
    "ap_id": bindparam("ap_id"), "type": bindparam("type"), "actor_ap_id": bindparam("actor_ap_id"),
    "signer_key_id": bindparam("signer_key_id"), "state": bindparam("state"), "attempts": bindparam("attempts"),
    "next_attempt_at": bindparam("now"), "received_at": bindparam("now"),
}  # fmt: skip


@dataclass(frozen=True)
class _Insert:
    dialect: Dialect
    sql: str
    order: tuple[str, ...]

    def values(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        common = {"state": self._bound("state", ReceivedState.QUEUED), "attempts": 0,
                  "now": self._bound("received_at", utcnow())}  # fmt: skip
        return [tuple({**row, **common}[name] for name in self.order) for row in rows]

    def _bound(self, column: str, value: Any) -> Any:
        process = _TABLE.c[column].type.bind_processor(self.dialect)
        return process(value) if process is not None else value


def _compiled(dialect: Dialect, document: Any) -> _Insert:
    statement = (
        (postgresql.insert(_TABLE) if dialect.name == "postgresql" else sqlite.insert(_TABLE))
        .values(**_VALUES, document=document)
        .inline()  # nothing is read back: no RETURNING
        .on_conflict_do_nothing(index_elements=["ap_id"])
        .compile(dialect=dialect)
    )
    return _Insert(dialect, statement.string, tuple(statement.positiontup or ()))


_INSERTS = {
    "sqlite": _compiled(sqlite.dialect(), _DOCUMENT_TEXT),
    "postgresql": _compiled(postgresql_asyncpg.dialect(), cast(_DOCUMENT_TEXT, JSON)),  # type: ignore[no-untyped-call]
}


async def _insert(sessions: async_sessionmaker[AsyncSession], rows: list[dict[str, Any]]) -> None:
    unique = [
        row if isinstance(row["document"], str) else {**row, "document": json.dumps(row["document"])}
        for row in {row["ap_id"]: row for row in rows}.values()
    ]
    engine: AsyncEngine = sessions.kw["bind"]
    insert = _INSERTS[engine.dialect.name]
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        if engine.dialect.name == "sqlite":  # aiosqlite: one call to the connection's thread
            await write_committed(raw, insert.sql, insert.values(unique))
        else:  # asyncpg, the only driver `forum.db` makes PostgreSQL engines with
            async with raw.transaction():
                await raw.executemany(insert.sql, insert.values(unique))


class InboxPressure:
    """How many inbox requests this process is answering now.

    The inbox worker that runs inside `forum serve` shares the process (and its one core of Python) with the
    inboxes: while peers are waiting for their `202`, it waits for a lull before each activity, up to a
    bound, so a burst is stored first and applied after, and a steady stream cannot stop it altogether. A
    `forum worker` process never waits: no inbox is answered there.
    """

    def __init__(self) -> None:
        self._answering = 0
        self._lull = asyncio.Event()
        self._lull.set()

    @property
    def answering(self) -> int:
        return self._answering

    @contextlib.contextmanager
    def answering_one(self) -> Iterator[None]:
        self._answering += 1
        self._lull.clear()
        try:
            yield
        finally:
            self._answering -= 1
            if self._answering == 0:
                self._lull.set()

    async def lull(self, at_most: float) -> None:
        """Returns once no inbox request is being answered, or after `at_most` seconds."""
        if self._answering:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lull.wait(), at_most)
