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
from typing import Any

from sqlalchemy import JSON, Table, Text, bindparam, cast
from sqlalchemy.dialects import postgresql, sqlite
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


# Built once, as Core statements on the table: the ORM's bulk INSERT and a statement made per call cost
# about 1.3 ms of CPU per commit here, more than the commit itself (a commit per one or two rows when the
# inbox is quiet). The same activity arriving through two inboxes at once (or already stored): one row. The
# document is bound as JSON text: an activity kept as received is the body's own text, never encoded again.
_TABLE = typing.cast(Table, ReceivedActivity.__table__)
_DOCUMENT_TEXT = bindparam("document", type_=Text)
_POSTGRESQL_INSERT = (
    postgresql.insert(_TABLE)
    .values(document=cast(_DOCUMENT_TEXT, JSON))
    .on_conflict_do_nothing(index_elements=["ap_id"])
)
# On SQLite the batch is written by `sqlite_driver.write_committed`, in one call to the connection's thread: the
# statement is SQLAlchemy's, compiled once, and its values bound the way the columns' types bind them.
_SQLITE = sqlite.dialect()
_SQLITE_INSERT = (
    sqlite.insert(_TABLE)
    .values(
        ap_id=bindparam("ap_id"), type=bindparam("type"), actor_ap_id=bindparam("actor_ap_id"),
        signer_key_id=bindparam("signer_key_id"), document=_DOCUMENT_TEXT, state=bindparam("state"),
        attempts=bindparam("attempts"), next_attempt_at=bindparam("now"), received_at=bindparam("now"),
    )
    .on_conflict_do_nothing(index_elements=["ap_id"])
    .compile(dialect=_SQLITE)
)  # fmt: skip
_SQLITE_ORDER = tuple(_SQLITE_INSERT.positiontup or ())


def _bound(column: str, value: Any) -> Any:
    process = _TABLE.c[column].type.bind_processor(_SQLITE)
    return process(value) if process is not None else value


async def _insert(sessions: async_sessionmaker[AsyncSession], rows: list[dict[str, Any]]) -> None:
    unique = [
        row if isinstance(row["document"], str) else {**row, "document": json.dumps(row["document"])}
        for row in {row["ap_id"]: row for row in rows}.values()
    ]
    engine: AsyncEngine = sessions.kw["bind"]
    if engine.dialect.name == "sqlite":  # aiosqlite, the only SQLite driver `forum.db` makes engines with
        common = {"state": _bound("state", ReceivedState.QUEUED), "attempts": 0, "now": _bound("received_at", utcnow())}
        values = [tuple({**row, **common}[name] for name in _SQLITE_ORDER) for row in unique]
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            assert raw.driver_connection is not None
            await write_committed(raw.driver_connection, _SQLITE_INSERT.string, values)
        return
    async with engine.begin() as connection:
        await connection.execute(_POSTGRESQL_INSERT, unique)


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
