"""The received-activities worker: takes stored activities in order, dispatches each to its handler.

Rows move queued -> processing -> done | refused | failed (retried with backoff). A row whose lease
ran out (a worker killed mid-batch) is taken again; handlers are idempotent (ids are unique), so a
second run of the same activity changes nothing.

Each activity is normalized as it is read (the inbox keeps most of them as received), and what it claims is
checked again against what its inbox checked and stored beside it.

Plain replies and first votes are applied in bulk, each run of them in one transaction
(`activitypub.bulk_replies`, `activitypub.bulk_votes`); what they leave, and every other activity, one
per transaction. Activities of other types keep their place: a run ends at each of them.

No transaction waits on a peer: an activity is applied with its fetches deferred
(`activitypub.protocol.deferral`); each document it needs is fetched between two attempts, outside any
transaction, and the activity applied again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.activity_origins import OriginRefused, check_origins, claims_of
from activitypub.bulk_replies import plain_reply, store_plain_replies
from activitypub.bulk_votes import VOTE_TYPES, count_plain_votes, plain_vote
from activitypub.handlers import HandlerFailed, HandlerRefused, Received, dispatch
from activitypub.protocol.backoff import GIVE_UP_AFTER, next_delay
from activitypub.protocol.deferral import TooManyFetches, with_fetches_deferred
from activitypub.protocol.jsonld import DocumentError
from activitypub.runtime import Federation
from forum.models import ReceivedActivity, ReceivedState
from forum.models.base import utcnow

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
# While this process answers inbox requests, the worker waits at most YIELD_AT_MOST for a lull, then works
# for WORK_SLICE before it waits again: a burst is stored before it is applied (peers are answered first,
# and the backlog is applied in bigger, cheaper batches), and a stream that never stops still gets a sixth
# of the process. With no inbox request in flight, nothing waits.
YIELD_AT_MOST = 0.5
WORK_SLICE = 0.1
# Documents one activity may need fetched: its object, authors, and a reply's parents (8 levels) with theirs.
MAX_FETCHES = 32
# What `_apply_in_bulk` may take: plain replies (a Create) and first votes.
BULK_TYPES = ["Create", *VOTE_TYPES]

_SETTLE_DONE = (
    update(ReceivedActivity)
    .where(ReceivedActivity.id == bindparam("row_id"), ReceivedActivity.state == ReceivedState.PROCESSING)
    .values(
        state=ReceivedState.DONE,
        attempts=ReceivedActivity.attempts + 1,
        outcome=bindparam("the_outcome"),
        locked_until=None,
        processed_at=bindparam("now"),
    )
)


class InboxWorker:
    def __init__(self, federation: Federation, *, batch_size: int = 100) -> None:
        self._federation = federation
        self._batch_size = batch_size

    async def run(self, idle: float = 0.2) -> None:
        while True:
            try:
                done = await self.run_once()
            except Exception:  # the queue is durable: log, wait, try again
                log.exception("inbox batch failed")
                done = 0
            if done == 0:
                await asyncio.sleep(idle)

    async def run_once(self) -> int:
        claimed = await self._claim()
        remaining = [row_id for row_id, _type in claimed]
        types = dict(claimed)
        loop = asyncio.get_running_loop()
        slice_ends = 0.0

        async def wait_for_turn() -> None:
            nonlocal slice_ends
            if loop.time() >= slice_ends:
                await self._federation.pressure.lull(YIELD_AT_MOST)
                slice_ends = loop.time() + WORK_SLICE

        try:
            while remaining:
                await wait_for_turn()
                # The longest run of rows that may go in bulk, up to the next one that may not: an activity of
                # another type (a Follow, a Delete, an Undo) keeps its place between those before and after it.
                run = list(itertools.takewhile(lambda row_id: types[row_id] in BULK_TYPES, remaining))
                settled = await self._apply_in_bulk(run) if run else set()
                for row_id in run or remaining[:1]:
                    if row_id not in settled:
                        await wait_for_turn()
                        await self._process(row_id)
                    remaining.remove(row_id)
        except asyncio.CancelledError:
            # Shutting down mid-batch: give back what this run took and did not settle, rather than leave it
            # leased (another process sharing the database would otherwise wait out the whole lease).
            with contextlib.suppress(Exception):
                await self._release(remaining)
            raise
        return len(claimed)

    async def _release(self, row_ids: list[int]) -> None:
        if not row_ids:
            return
        async with self._federation.sessions() as session, session.begin():
            await session.execute(
                update(ReceivedActivity)
                .where(ReceivedActivity.id.in_(row_ids), ReceivedActivity.state == ReceivedState.PROCESSING)
                .values(state=ReceivedState.QUEUED, locked_until=None)
            )

    async def _claim(self) -> list[tuple[int, str]]:
        """Rows due, oldest first, leased to this run: their ids and types."""
        now = utcnow()
        async with self._federation.sessions() as session, session.begin():
            due = (
                select(ReceivedActivity.id, ReceivedActivity.type)
                .where(
                    or_(
                        and_(
                            ReceivedActivity.state.in_([ReceivedState.QUEUED, ReceivedState.FAILED]),
                            ReceivedActivity.next_attempt_at <= now,
                        ),
                        and_(ReceivedActivity.state == ReceivedState.PROCESSING, ReceivedActivity.locked_until < now),
                    )
                )
                .order_by(ReceivedActivity.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )
            claimed = [(row_id, kind) for row_id, kind in await session.execute(due)]
            if claimed:
                await session.execute(
                    update(ReceivedActivity)
                    .where(ReceivedActivity.id.in_([row_id for row_id, _type in claimed]))
                    .values(state=ReceivedState.PROCESSING, locked_until=now + LEASE)
                )
            return claimed

    async def _apply_in_bulk(self, row_ids: list[int]) -> set[int]:
        """The batch's plain replies, then its plain votes, applied and settled in one transaction; the ids
        settled (the replies first: a vote on one of them finds it)."""
        federation = self._federation
        host = federation.settings.host.lower()
        try:
            async with federation.sessions() as session, session.begin():
                rows = await session.execute(
                    # Only these types can be applied in bulk: the others are not even read here.
                    select(
                        ReceivedActivity.id, ReceivedActivity.ap_id, ReceivedActivity.type,
                        ReceivedActivity.actor_ap_id, ReceivedActivity.document,
                    ).where(
                        ReceivedActivity.id.in_(row_ids),
                        ReceivedActivity.state == ReceivedState.PROCESSING,
                        ReceivedActivity.type.in_(BULK_TYPES),
                    )
                )  # fmt: skip
                # An activity that cannot be read is left to the one-by-one path, which records why.
                documents = [
                    (row.id, activity)
                    for row in rows
                    if (activity := _read_or_none(federation, row.ap_id, row.type, row.actor_ap_id, row.document))
                ]
                replies = [reply for row_id, document in documents if (reply := plain_reply(row_id, document, host))]
                votes = [vote for row_id, document in documents if (vote := plain_vote(row_id, document))]
                outcomes = await store_plain_replies(session, federation, replies) if replies else {}
                if votes:
                    outcomes |= await count_plain_votes(session, federation, votes)
                if not outcomes:
                    return set()
                await session.flush()
                now = utcnow()
                connection = await session.connection()
                await connection.execute(
                    _SETTLE_DONE,
                    [{"row_id": row_id, "the_outcome": text, "now": now} for row_id, text in outcomes.items()],
                )
                stale = await federation.invalidations.flush_pending(session)
        except Exception:
            # A unique post beaten by another worker, a database hiccup, a bug: nothing of the batch was kept,
            # and the per-activity path, which settles each row whatever happens, takes every row.
            log.exception("applying %d received activities together failed; applying them one by one", len(row_ids))
            return set()
        federation.invalidations.drop(stale)
        return set(outcomes)

    async def _process(self, row_id: int) -> None:
        state, outcome = ReceivedState.DONE, "done"
        try:
            await with_fetches_deferred(lambda: self._apply(row_id), max_fetches=MAX_FETCHES)
            return
        except TooManyFetches as refusal:
            state, outcome = ReceivedState.REFUSED, str(refusal)
        except HandlerRefused as refusal:
            state, outcome = ReceivedState.REFUSED, refusal.reason
        except HandlerFailed as failure:
            state, outcome = ReceivedState.FAILED, failure.reason
        except Exception as error:  # a bug or a database hiccup: keep the row and retry it later
            log.exception("processing received activity %s failed", row_id)
            state, outcome = ReceivedState.FAILED, f"internal error: {type(error).__name__}"
        await self._finish(row_id, state, outcome)

    async def _apply(self, row_id: int) -> None:
        federation = self._federation
        async with federation.sessions() as session:
            async with session.begin():
                row = await session.get(ReceivedActivity, row_id)
                if row is None or row.state != ReceivedState.PROCESSING:
                    return
                activity = read_received(federation, row.ap_id, row.type, row.actor_ap_id, row.document)
                outcome = await dispatch(Received(session, federation, activity)) or "done"
                await session.flush()
                # Settled in the transaction that applied it: one commit per activity, and a row is never
                # applied without being marked done.
                await self._settle(session, row_id, ReceivedState.DONE, outcome)
                stale = await federation.invalidations.flush_pending(session)
            federation.invalidations.drop(stale)

    async def _finish(self, row_id: int, state: ReceivedState, outcome: str) -> None:
        async with self._federation.sessions() as session, session.begin():
            await self._settle(session, row_id, state, outcome)

    async def _settle(self, session: AsyncSession, row_id: int, state: ReceivedState, outcome: str) -> None:
        now = utcnow()
        row = await session.get(ReceivedActivity, row_id)
        if row is None:
            return
        if state == ReceivedState.FAILED and now - row.received_at > GIVE_UP_AFTER:
            state = ReceivedState.REFUSED
        values: dict[str, object] = {
            "attempts": ReceivedActivity.attempts + 1,
            "outcome": outcome[:2000],
            "locked_until": None,
            "processed_at": now,
            "state": state,
        }
        if state == ReceivedState.FAILED:
            values["next_attempt_at"] = now + timedelta(seconds=next_delay(row.attempts + 1))
        settle = update(ReceivedActivity).where(ReceivedActivity.id == row_id)
        if state == ReceivedState.FAILED:
            # Another run of this row (taken again when its lease ran out) may have settled it meanwhile:
            # this run's failure (its unique insert beaten by that run's) must not undo that. Checked in
            # the UPDATE itself, which PostgreSQL re-evaluates after waiting for the other run's commit.
            settle = settle.where(ReceivedActivity.state.not_in([ReceivedState.DONE, ReceivedState.REFUSED]))
        await session.execute(settle.values(**values))
        if state != ReceivedState.DONE:
            log.info("received activity %s %s: %s", row_id, state.value, outcome)


def read_received(
    federation: Federation, ap_id: str, kind: str, actor: str, document: dict[str, Any]
) -> dict[str, Any]:
    """The stored activity, normalized (the inbox keeps most activities as received: it read their claims at a
    glance), or HandlerRefused when it cannot be read, or when what it claims, read in full, is not what the
    inbox checked and stored beside it (`ap_id`, `kind`, `actor`)."""
    try:
        activity = federation.normalize(document)
        claims = check_origins(claims_of(activity), federation.settings.host.lower())
    except DocumentError as error:
        raise HandlerRefused(str(error)) from None
    except OriginRefused as refusal:
        raise HandlerRefused(refusal.reason) from None
    if (claims.id, claims.type[:32], claims.actor) != (ap_id, kind, actor):
        raise HandlerRefused("the activity, read in full, claims another id, type or actor than its inbox checked")
    return activity


def _read_or_none(
    federation: Federation, ap_id: str, kind: str, actor: str, document: dict[str, Any]
) -> dict[str, Any] | None:
    try:
        return read_received(federation, ap_id, kind, actor, document)
    except HandlerRefused:
        return None
