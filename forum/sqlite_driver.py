"""SQLite through aiosqlite at one thread hop per statement: the DB-API adapter `forum.db` gives SQLAlchemy.

aiosqlite runs each connection on a thread of its own and hands it one call at a time. SQLAlchemy's adapter
makes four such calls per statement (open a cursor, execute, fetch, close) and one more to roll back
when a connection goes back to the pool. Each call is a handoff between threads and back to the event loop,
which costs far more than the statement: measured here, a primary-key SELECT takes 4 µs in `sqlite3`, 155 µs
of CPU as one aiosqlite call, and 495 µs as four. This adapter runs the whole statement as one call, and spares
the commit or rollback of a connection that has no transaction open (reads never open one: the driver begins a
transaction only before it writes).

It uses aiosqlite's `Connection._execute` and `_conn` (as SQLAlchemy's own adapter uses `_tx` and `_conn`):
the version is pinned in `pyproject.toml`, and `tests/test_sqlite_driver.py` fails if they change.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, int, int | None, list[Any]]  # description, rowcount, lastrowid, rows


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """One statement, start to finish, on the connection's own thread."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        return description, cursor.rowcount, cursor.lastrowid, cursor.fetchall() if description else []
    finally:
        cursor.close()


class OneCallCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose every statement is one call to the connection's thread."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:  # no aiosqlite cursor: each statement makes its own
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return None  # the statement's cursor closed in its own call

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._call(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        self._call(operation, seq_of_parameters, many=True)

    def _call(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection = cast(aiosqlite.Connection, self._connection)
        try:
            outcome = await_(connection._execute(_run, connection._conn, operation, parameters, many))  # type: ignore[no-untyped-call]
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows)


class OneCallConnection(AsyncAdapt_aiosqlite_connection):
    """aiosqlite's adapted connection with one-call cursors, and no call to end a transaction never begun."""

    __slots__ = ()
    _cursor_cls = OneCallCursor

    def rollback(self) -> None:
        if self._in_transaction():
            super().rollback()

    def commit(self) -> None:
        if self._in_transaction():
            super().commit()

    def _in_transaction(self) -> bool:
        # Read from the event loop's thread: sqlite3 checks no thread for this flag, and no statement of this
        # connection is running (SQLAlchemy ends a transaction only between statements).
        connection: sqlite3.Connection | None = self._connection._connection
        return connection is not None and connection.in_transaction


class OneCallDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """Given to `create_async_engine(module=…)` in place of the module SQLAlchemy would import."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneCallConnection:
        adapted = super().connect(*arg, **kw)
        return OneCallConnection(self, adapted._connection)


async def write_committed(connection: aiosqlite.Connection, operation: str, rows: Sequence[Sequence[Any]]) -> None:
    """`operation` once for each of `rows`, in a transaction of its own, committed: one call to the connection's
    thread, where an ORM session makes two (the statement, the commit) and spends about 0.7 ms more of the event
    loop's time around them. For a group commit of plain rows (the inbox's): nothing of it is read back."""
    await connection._execute(_write_committed, connection._conn, operation, rows)  # type: ignore[no-untyped-call]


def _write_committed(connection: sqlite3.Connection, operation: str, rows: Sequence[Sequence[Any]]) -> None:
    connection.execute("BEGIN IMMEDIATE")  # the write lock at once: this transaction only writes
    try:
        connection.executemany(operation, rows)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
