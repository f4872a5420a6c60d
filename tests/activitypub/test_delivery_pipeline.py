"""The delivery worker's loop claims its next batch while one is out: a row claimed that way must still never
overtake an earlier row of its inbox that the batch before found unavailable (a `Delete` must not arrive
before the `Create` it undoes). Real database, real HTTP receivers on loopback, batches of one row."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import select

from activitypub.delivery import DeliveryWorker
from activitypub.protocol.poster import DeliveryPoster
from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.models import Delivery, DeliveryState, OutgoingActivity
from tests.activitypub.local_actors import local_actor


@dataclass
class Receivers:
    """`/busy/inbox` answers 503 after a pause (long enough for the next claim to happen meanwhile);
    `/ok/inbox` answers 202. Each keeps the activity ids it was sent, in order."""

    port: int = 0
    heard: dict[str, list[str]] = field(default_factory=lambda: {"/busy/inbox": [], "/ok/inbox": []})


@contextlib.asynccontextmanager
async def receivers() -> AsyncIterator[Receivers]:
    found = Receivers()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split()[1]
                length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length"))
                body = await reader.readexactly(length)
                found.heard[path].append(body.decode().split('"id":"', 1)[1].split('"', 1)[0])
                if path == "/busy/inbox":
                    await asyncio.sleep(0.5)
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found


async def test_a_row_claimed_ahead_waits_behind_its_inbox_that_just_failed(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    sessions = sessionmaker(engine)
    poster = DeliveryPoster(allow_private=True, user_agent="Jardin-test/1.0", deadline=5.0)
    async with receivers() as lab:
        domain = f"127.0.0.1:{lab.port}"
        async with sessions() as session, session.begin():
            ana = await local_actor(session, settings.base_url, "ana")
            activities = []
            for n in (1, 2, 3):
                ap_id = f"{settings.base_url}/activities/{n}"
                activity = OutgoingActivity(ap_id=ap_id, actor_id=ana.id, type="Create",
                                            document={"id": ap_id, "type": "Create", "actor": ana.ap_id})  # fmt: skip
                session.add(activity)
                activities.append(activity)
            await session.flush()
            # Oldest first: the busy inbox's two rows, then the other inbox's.
            rows = [
                Delivery(activity_id=activities[0].id, inbox_url=f"http://{domain}/busy/inbox", domain=domain),
                Delivery(activity_id=activities[1].id, inbox_url=f"http://{domain}/busy/inbox", domain=domain),
                Delivery(activity_id=activities[2].id, inbox_url=f"http://{domain}/ok/inbox", domain=domain),
            ]
            session.add_all(rows)
            await session.flush()
            first, second, other = (row.id for row in rows)

        worker = DeliveryWorker(sessions, poster, batch_size=1)
        running = asyncio.create_task(worker.run(idle=0.05))
        try:
            async with asyncio.timeout(20):
                while lab.heard["/ok/inbox"] == [] or await _state(sessions, first) == DeliveryState.SENDING:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # time enough for anything that would overtake to go out
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await poster.aclose()

    assert lab.heard["/busy/inbox"] == [f"{settings.base_url}/activities/1"]  # the second never overtook it
    assert lab.heard["/ok/inbox"] == [f"{settings.base_url}/activities/3"]
    async with sessions() as session:
        found = {row.id: row for row in await session.scalars(select(Delivery))}
    assert found[first].state == DeliveryState.QUEUED and found[first].attempts == 1
    assert found[first].last_status == 503
    assert found[second].state == DeliveryState.QUEUED and found[second].attempts == 0
    assert found[second].next_attempt_at >= found[first].next_attempt_at
    assert found[other].state == DeliveryState.DELIVERED
    await engine.dispose()


async def _state(sessions: object, delivery_id: int) -> DeliveryState:
    async with sessions() as session:  # type: ignore[operator]
        state: DeliveryState = await session.scalar(select(Delivery.state).where(Delivery.id == delivery_id))
    return state
