"""`activitypub.peer_notes` against a real database: what a peer's verified request tells (its signature form,
that it is up) is written after the answer, many peers in one batch, each peer looked at once a minute."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activitypub.peer_notes import NOTE_EVERY, PeerNotes
from activitypub.protocol.client import GuardedClient
from activitypub.protocol.jsonld import Normalizer
from activitypub.resolver import ActivityPubResolver
from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.models import Instance
from forum.models.base import utcnow


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def resolver(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[ActivityPubResolver]:
    async with GuardedClient(allow_private=False, user_agent="test") as client:
        yield ActivityPubResolver(settings, sessions, client, Normalizer())


async def instances(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Instance]:
    async with sessions() as session:
        return {row.domain: row for row in (await session.scalars(select(Instance))).all()}


async def test_a_note_is_written_after_the_caller_goes_on(
    sessions: async_sessionmaker[AsyncSession], resolver: ActivityPubResolver
) -> None:
    notes = PeerNotes(sessions, resolver)
    engine = sessions.kw["bind"].sync_engine
    written: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            written.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        notes.note("new.example", "rfc9421")
        # Back with the caller, nothing written yet (checked before anything else may run: no await since).
        assert written == []
        await notes.settled()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert written, "the note was never written"
    known = await instances(sessions)
    assert known["new.example"].signature_form == "rfc9421" and not known["new.example"].unreachable


async def test_peers_that_write_again_are_up_and_their_form_is_kept(
    sessions: async_sessionmaker[AsyncSession], resolver: ActivityPubResolver
) -> None:
    down_since = utcnow() - timedelta(days=4)
    async with sessions() as session, session.begin():
        session.add_all([
            Instance(domain="down.example", failures=40, unreachable=True, first_failure_at=down_since,
                     probe_at=utcnow() + timedelta(hours=1)),
            Instance(domain="cavage.example", signature_form="cavage", failures=0, unreachable=False),
            Instance(domain="quiet.example", signature_form="rfc9421", failures=0, unreachable=False),
        ])  # fmt: skip
    notes = PeerNotes(sessions, resolver)
    notes.note("down.example", "cavage")
    notes.note("cavage.example", "rfc9421")
    notes.note("quiet.example", "cavage")  # a peer that knocks with draft-cavage first still reads RFC 9421
    await notes.settled()
    known = await instances(sessions)
    down = known["down.example"]
    assert not down.unreachable and down.failures == 0 and down.first_failure_at is None and down.probe_at is None
    assert known["cavage.example"].signature_form == "rfc9421"
    assert known["quiet.example"].signature_form == "rfc9421"


async def test_many_peers_noted_together_cost_one_read_and_each_is_looked_at_once_a_minute(
    sessions: async_sessionmaker[AsyncSession], resolver: ActivityPubResolver
) -> None:
    async with sessions() as session, session.begin():
        session.add_all([Instance(domain=f"p{n}.example", failures=0, unreachable=False) for n in range(50)])
    engine = sessions.kw["bind"]
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    clock = Clock()
    notes = PeerNotes(sessions, resolver, clock=clock)
    for n in range(50):
        notes.note(f"p{n}.example", "cavage")
    await notes.settled()
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")

    statements.clear()
    clock.now += NOTE_EVERY / 2
    for n in range(50):
        notes.note(f"p{n}.example", "cavage")
    await notes.settled()
    assert statements == []  # looked at less than a minute ago

    clock.now += NOTE_EVERY
    notes.note("p7.example", "cavage")
    await notes.settled()
    assert len(statements) == 1


async def test_a_failed_batch_is_logged_and_the_next_request_notes_again(
    sessions: async_sessionmaker[AsyncSession], resolver: ActivityPubResolver, caplog: pytest.LogCaptureFixture
) -> None:
    notes = PeerNotes(sessions, resolver)
    real_write = notes._write
    failures = [RuntimeError("the database went away")]

    async def flaky(batch: list[tuple[str, str]]) -> None:
        if failures:
            raise failures.pop()
        await real_write(batch)

    notes._write = flaky  # type: ignore[method-assign]
    notes.note("again.example", "rfc9421")
    await notes.settled()
    assert "could not write" in caplog.text and "again.example" not in await instances(sessions)
    notes.note("again.example", "rfc9421")
    await asyncio.wait_for(notes.settled(), timeout=10)
    assert (await instances(sessions))["again.example"].signature_form == "rfc9421"
