"""The delivery worker: takes due rows of the `deliveries` queue, signs and posts them, records the outcome.

Rows move queued -> sending -> delivered | queued (retry, with backoff) | failed | gone. A worker holds
the rows it took for a lease; rows whose lease ran out (a worker killed mid-batch) are taken again. On
PostgreSQL many workers share the queue with `FOR UPDATE SKIP LOCKED`. Concurrency is bounded overall
and per instance. An instance failing for days is marked unreachable: its rows wait, and one is tried
every few hours to see whether it answers again.

Each inbox gets its activities in the order they were written (a reply after the post it answers):
one inbox's rows in a batch go one after the other, by id; when the peer is unavailable (no answer, a
5xx, 408/425/429) the ones after it wait with it, every queued row of that inbox is lined up behind its
retry time, and a row queued later is not sent while an older one for the same inbox is still waiting.

A fan-out's cost is one RSA signature per shared inbox (the Host header is signed, so no two requests
share one) and one HTTP exchange. The signatures are made on a thread pool (the cryptography package
lets go of the GIL while it signs), so they run on another core while the event loop talks HTTP
through `DeliveryPoster`; a batch's first knocks are signed ahead, `SIGN_CHUNK` to a job, so the event
loop hands work to the threads and takes it back once per chunk rather than once per request. A new
activity rings the worker (`wake`) instead of waiting for its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activitypub.protocol.backoff import GIVE_UP_AFTER, next_delay
from activitypub.protocol.client import FetchError
from activitypub.protocol.poster import DeliveryPoster
from activitypub.protocol.signatures import SignatureForm, SigningKey, sign_request
from forum.models import Actor, Delivery, DeliveryState, Instance, OutgoingActivity
from forum.models.base import utcnow

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
UNREACHABLE_AFTER = timedelta(days=2)
PROBE_EVERY = timedelta(hours=6)
RETRYABLE_4XX = {401, 403, 408, 425, 429}
# Requests signed per job on the signer threads: enough that handing over costs little, few enough that the
# first requests of a batch need not wait long for theirs.
SIGN_CHUNK = 16


@dataclass
class Outcome:
    delivery_id: int
    domain: str
    status: int | None
    error: str | None = None
    retry_after: float | None = None
    # The signature form the peer took, when it took one.
    form: str | None = None
    # Not sent: an earlier delivery to the same inbox must be retried first.
    held: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


# id, activity id, inbox, domain, attempts, created at
_Row = tuple[int, int, str, str, int, datetime]
# The headers of a signed request, or why it could not be signed.
_Signed = dict[str, str] | FetchError


@dataclass
class _Batch:
    rows: list[_Row]
    bodies: dict[int, bytes] = field(default_factory=dict)
    keys: dict[int, SigningKey] = field(default_factory=dict)
    forms: dict[str, str | None] = field(default_factory=dict)
    # Each row's first knock, being signed ahead on the signer threads: the job's future and the row's place in it.
    first_knocks: dict[int, tuple[asyncio.Future[list[_Signed]], int]] = field(default_factory=dict)


class DeliveryWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        poster: DeliveryPoster,
        *,
        batch_size: int = 500,
        concurrency: int = 64,
        per_instance: int = 4,
        signers: int = 2,
    ) -> None:
        self._sessions = sessions
        self._poster = poster
        self._batch_size = batch_size
        self._concurrency = asyncio.Semaphore(concurrency)
        self._per_instance = per_instance
        self._keys: dict[str, SigningKey] = {}
        self._signers = ThreadPoolExecutor(signers, thread_name_prefix="delivery-sign")
        self._doorbell = asyncio.Event()

    def wake(self) -> None:
        """New deliveries were committed: look now rather than at the next poll."""
        self._doorbell.set()

    async def run(self, idle: float = 0.5) -> None:
        """Deliver until cancelled. The next batch is claimed while one is out (a claim is a few tens of
        milliseconds of database work in which nothing would be sent), and sent once the batch before it is
        recorded; its rows for an inbox that just failed line up behind that inbox's retry instead."""
        ahead: asyncio.Task[_Batch] | None = None
        try:
            while True:
                self._doorbell.clear()
                try:
                    batch = await ahead if ahead is not None else await self._claim()
                except Exception:  # the queue is durable: log, wait, try again
                    log.exception("claiming deliveries failed")
                    batch = _Batch([])
                ahead = None
                if not batch.rows:
                    # The poll stays: other processes (a `forum worker`, another web process) queue rows too.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._doorbell.wait(), idle)
                    continue
                sending = asyncio.create_task(self._send_batch(batch), name="deliveries-out")
                ahead = asyncio.create_task(self._claim(), name="deliveries-claim-ahead")
                try:
                    outcomes = await asyncio.shield(sending)
                    retry_at = await self._record(batch, outcomes)
                except asyncio.CancelledError:
                    sending.cancel()
                    with contextlib.suppress(Exception):
                        await self._release([row[0] for row in batch.rows])
                    raise
                except Exception:
                    log.exception("delivery batch failed")  # its rows go back when their lease ends
                    continue
                if retry_at:
                    ahead = asyncio.create_task(self._behind_retries(ahead, retry_at))
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    claimed = await ahead
                    await self._release([row[0] for row in claimed.rows])
            self._signers.shutdown(wait=False)

    async def run_once(self) -> int:
        """Take one batch of due deliveries, send them, record what happened; returns how many were taken."""
        batch = await self._claim()
        if not batch.rows:
            return 0
        try:
            await self._record(batch, await self._send_batch(batch))
        except asyncio.CancelledError:
            # Shutting down mid-batch: what was not recorded goes back to the queue now, not when the lease ends
            # (a peer may get one activity twice; inboxes drop duplicates by id).
            with contextlib.suppress(Exception):
                await self._release([row[0] for row in batch.rows])
            raise
        return len(batch.rows)

    async def _send_batch(self, batch: _Batch) -> list[Outcome]:
        slots: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self._per_instance))
        by_inbox: defaultdict[str, list[_Row]] = defaultdict(list)
        for row in sorted(batch.rows):
            by_inbox[row[2]].append(row)
        self._sign_ahead(batch, by_inbox)
        runs = await asyncio.gather(
            *(self._send_in_order(batch, rows, slots[rows[0][3]]) for rows in by_inbox.values())
        )
        return [outcome for run in runs for outcome in run]

    async def _behind_retries(self, claiming: asyncio.Task[_Batch], retry_at: dict[str, datetime]) -> _Batch:
        """The batch claimed ahead, less its rows for inboxes the batch before found unavailable: those were
        claimed before that batch's failures were recorded, and go back to wait behind the inbox's retry."""
        batch = await claiming
        waiting = [row for row in batch.rows if row[2] in retry_at]
        if not waiting:
            return batch
        async with self._sessions() as session, session.begin():
            for row in waiting:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == row[0], Delivery.state == DeliveryState.SENDING)
                    .values(state=DeliveryState.QUEUED, locked_until=None, next_attempt_at=retry_at[row[2]])
                )
        batch.rows = [row for row in batch.rows if row[2] not in retry_at]
        return batch

    def _sign_ahead(self, batch: _Batch, by_inbox: dict[str, list[_Row]]) -> None:
        """Start signing every row's first knock, in the order the rows will go out: each inbox's first row,
        then each inbox's second, and so on."""
        loop = asyncio.get_running_loop()
        depth = max((len(rows) for rows in by_inbox.values()), default=0)
        order = [rows[n] for n in range(depth) for rows in by_inbox.values() if n < len(rows)]
        ready = [row for row in order if row[1] in batch.bodies and row[1] in batch.keys]
        for start in range(0, len(ready), SIGN_CHUNK):
            chunk = ready[start : start + SIGN_CHUNK]
            requests = [
                (row[2], batch.bodies[row[1]], batch.keys[row[1]], self._first_form(batch, row[3])) for row in chunk
            ]
            job = loop.run_in_executor(self._signers, _sign_all, requests)
            for place, row in enumerate(chunk):
                batch.first_knocks[row[0]] = (job, place)

    @staticmethod
    def _first_form(batch: _Batch, domain: str) -> SignatureForm:
        return "rfc9421" if batch.forms.get(domain) == "rfc9421" else "cavage"

    async def _release(self, delivery_ids: list[int]) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(delivery_ids), Delivery.state == DeliveryState.SENDING)
                .values(state=DeliveryState.QUEUED, locked_until=None)
            )

    async def _send_in_order(self, batch: _Batch, rows: list[_Row], slot: asyncio.Semaphore) -> list[Outcome]:
        """One inbox's rows, oldest first; after a failure worth retrying, the rest wait for that retry."""
        outcomes: list[Outcome] = []
        for index, row in enumerate(rows):
            outcome = await self._send(batch, row, slot)
            outcomes.append(outcome)
            if not outcome.delivered and _unavailable(outcome.status):
                outcomes += [Outcome(later[0], later[3], None, None, held=True) for later in rows[index + 1 :]]
                break
        return outcomes

    async def _claim(self) -> _Batch:
        now = utcnow()
        async with self._sessions() as session, session.begin():
            waiting = select(Instance.domain).where(Instance.unreachable.is_(True), Instance.probe_at > now)
            due = (
                select(Delivery.id, Delivery.inbox_url, Delivery.domain)
                .where(
                    or_(
                        and_(Delivery.state == DeliveryState.QUEUED, Delivery.next_attempt_at <= now),
                        and_(Delivery.state == DeliveryState.SENDING, Delivery.locked_until < now),
                    ),
                    Delivery.domain.not_in(waiting),
                )
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )
            candidates = (await session.execute(due)).all()
            ids = await self._not_overtaking(session, candidates, now)
            if not ids:
                return _Batch([])
            rows = (
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(ids))
                    .values(state=DeliveryState.SENDING, locked_until=now + LEASE)
                    .returning(
                        Delivery.id,
                        Delivery.activity_id,
                        Delivery.inbox_url,
                        Delivery.domain,
                        Delivery.attempts,
                        Delivery.created_at,
                    )
                )
            ).all()
            batch = _Batch([tuple(row) for row in rows])  # type: ignore[misc]
            activity_ids = {row[1] for row in batch.rows}
            documents = await session.execute(
                select(OutgoingActivity.id, OutgoingActivity.document, Actor.key_id, Actor.private_key_pem)
                .join(Actor, Actor.id == OutgoingActivity.actor_id)
                .where(OutgoingActivity.id.in_(activity_ids))
            )
            for activity_id, document, key_id, pem in documents:
                batch.bodies[activity_id] = json.dumps(document, separators=(",", ":")).encode()
                batch.keys[activity_id] = self._signing_key(str(key_id), str(pem))
            domains = {row[3] for row in batch.rows}
            forms = await session.execute(
                select(Instance.domain, Instance.signature_form).where(Instance.domain.in_(domains))
            )
            batch.forms = {domain: form for domain, form in forms}
            return batch

    @staticmethod
    async def _not_overtaking(session: AsyncSession, candidates: Sequence[Any], now: datetime) -> list[int]:
        """The candidates' ids, less those that would overtake an older row of their inbox still waiting for its
        retry; those are lined up behind it instead."""
        if not candidates:
            return []
        inboxes = {row.inbox_url for row in candidates}
        waiting = await session.execute(
            select(Delivery.inbox_url, func.min(Delivery.id), func.max(Delivery.next_attempt_at))
            .where(
                Delivery.state == DeliveryState.QUEUED,
                Delivery.next_attempt_at > now,
                # Waiting because the peer was unavailable (or lined up behind such a row, never tried): a row
                # refused with a 4xx of its own does not hold the others.
                or_(Delivery.last_status.is_(None), Delivery.last_status >= 500, Delivery.last_status.in_(BUSY)),
                Delivery.domain.in_({row.domain for row in candidates}),
                Delivery.inbox_url.in_(inboxes),
            )
            .group_by(Delivery.inbox_url)
        )
        older = {inbox: (first_id, retry_at) for inbox, first_id, retry_at in waiting}
        ids: list[int] = []
        for row in candidates:
            behind = older.get(row.inbox_url)
            if behind is not None and row.id > behind[0]:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == row.id)
                    .values(state=DeliveryState.QUEUED, locked_until=None, next_attempt_at=behind[1])
                )
                continue
            ids.append(row.id)
        return ids

    def _signing_key(self, key_id: str, pem: str) -> SigningKey:
        # Loading a PEM costs more than a signature: keep each actor's loaded key.
        key = self._keys.get(key_id)
        if key is None:
            key = self._keys[key_id] = SigningKey(key_id, pem)
        return key

    async def _send(self, batch: _Batch, row: _Row, slot: asyncio.Semaphore) -> Outcome:
        delivery_id, activity_id, inbox, domain, _attempts, _created = row
        body, key = batch.bodies.get(activity_id), batch.keys.get(activity_id)
        if body is None or key is None:
            return Outcome(delivery_id, domain, None, "the activity or its actor's key is gone")
        first = self._first_form(batch, domain)
        async with self._concurrency, slot:
            signed = batch.first_knocks.get(delivery_id)
            outcome = await self._post(delivery_id, domain, inbox, body, key, first, signed)
            if first == "rfc9421" and outcome.status in (400, 401, 403):
                # Double-knocking: a peer that refuses one form is asked again in the other, and remembered.
                outcome = await self._post(delivery_id, domain, inbox, body, key, "cavage", None)
            elif first == "cavage":
                outcome.form = None  # nothing learnt: draft-cavage is what everyone is sent first
        return outcome

    async def _post(
        self,
        delivery_id: int,
        domain: str,
        inbox: str,
        body: bytes,
        key: SigningKey,
        form: SignatureForm,
        signed: tuple[asyncio.Future[list[_Signed]], int] | None,
    ) -> Outcome:
        """One knock; `signed` is its headers' signing job when they were signed ahead."""
        try:
            if signed is None:
                loop = asyncio.get_running_loop()
                headers = await loop.run_in_executor(self._signers, _signed_headers, inbox, body, key, form)
            else:
                job, place = signed
                made = (await job)[place]
                if isinstance(made, FetchError):
                    raise made
                headers = made
            result = await self._poster.post(inbox, body, headers)
        except FetchError as failure:
            return Outcome(delivery_id, domain, failure.status, failure.reason[:500])
        refused = None if 200 <= result.status < 300 else f"HTTP {result.status}: {result.body_excerpt[:200]}"
        return Outcome(delivery_id, domain, result.status, refused, result.retry_after, form)

    async def _record(self, batch: _Batch, outcomes: list[Outcome]) -> dict[str, datetime]:
        """Write what happened; returns each inbox found unavailable, with the time of its retry."""
        now = utcnow()
        by_id = {row[0]: row for row in batch.rows}
        delivered = [o.delivery_id for o in outcomes if o.delivered]
        sent = [o for o in outcomes if not o.held]
        ok_domains = {o.domain for o in sent if o.delivered}
        failing_domains = {o.domain for o in sent if o.status is None or o.status >= 500} - ok_domains
        # Each inbox's retry time, which every queued row of that inbox lines up behind.
        retry_at: dict[str, datetime] = {}
        async with self._sessions() as session, session.begin():
            if delivered:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(delivered))
                    .values(state=DeliveryState.DELIVERED, delivered_at=now, locked_until=None, last_status=200)
                )
            for outcome in sent:
                if outcome.delivered:
                    continue
                _, _, inbox, _, attempts, created = by_id[outcome.delivery_id]
                values = self._retry(outcome, attempts, created, now)
                await session.execute(update(Delivery).where(Delivery.id == outcome.delivery_id).values(**values))
                if values["state"] == DeliveryState.QUEUED and _unavailable(outcome.status):
                    at = values["next_attempt_at"]
                    assert isinstance(at, datetime)
                    retry_at[inbox] = max(at, retry_at.get(inbox, at))
                if outcome.status == 410:
                    await session.execute(update(Actor).where(Actor.inbox_url == inbox).values(gone_at=now))
            for inbox, at in retry_at.items():
                domain = next(row[3] for row in batch.rows if row[2] == inbox)
                await session.execute(
                    update(Delivery)
                    .where(
                        Delivery.domain == domain,
                        Delivery.inbox_url == inbox,
                        Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING]),
                        or_(Delivery.state == DeliveryState.QUEUED, Delivery.id.in_(list(by_id))),
                        Delivery.next_attempt_at < at,
                    )
                    .values(state=DeliveryState.QUEUED, locked_until=None, next_attempt_at=at)
                )
            held = [o.delivery_id for o in outcomes if o.held and by_id[o.delivery_id][2] not in retry_at]
            if held:  # behind a failure that was not retried after all: due again now
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(held))
                    .values(state=DeliveryState.QUEUED, locked_until=None, next_attempt_at=now)
                )
            await self._instance_health(session, batch, outcomes, ok_domains, failing_domains, now)
        return retry_at

    def _retry(self, outcome: Outcome, attempts: int, created: datetime, now: datetime) -> dict[str, object]:
        values: dict[str, object] = {
            "attempts": attempts + 1,
            "locked_until": None,
            "last_status": outcome.status,
            "last_error": outcome.error,
        }
        status = outcome.status
        if status == 410:
            values["state"] = DeliveryState.GONE
        elif not _retryable(status):
            values["state"] = DeliveryState.FAILED  # the peer refuses it for good
        elif now - created > GIVE_UP_AFTER:
            values["state"] = DeliveryState.FAILED
        else:
            values["state"] = DeliveryState.QUEUED
            values["next_attempt_at"] = now + timedelta(seconds=next_delay(attempts + 1, outcome.retry_after))
        return values

    async def _instance_health(
        self,
        session: AsyncSession,
        batch: _Batch,
        outcomes: list[Outcome],
        ok_domains: set[str],
        failing_domains: set[str],
        now: datetime,
    ) -> None:
        forms = {o.domain: o.form for o in outcomes if o.form and o.status is not None and 200 <= o.status < 300}
        domains = ok_domains | failing_domains
        if not domains:
            return
        # Entities (costly to load by the thousand) only for the instances that change beyond the bulk update.
        stored = set(await session.scalars(select(Instance.domain).where(Instance.domain.in_(domains))))
        noted = (failing_domains | {domain for domain in ok_domains if domain in forms}) & stored
        known = (
            {
                instance.domain: instance
                for instance in await session.scalars(select(Instance).where(Instance.domain.in_(noted)))
            }
            if noted
            else {}
        )
        healthy = [domain for domain in ok_domains if domain in stored]
        if healthy:
            # One statement for every instance that answered (a fan-out reaches thousands), not one each.
            await session.execute(
                update(Instance)
                .where(Instance.domain.in_(healthy))
                .values(failures=0, first_failure_at=None, unreachable=False, probe_at=None, last_success_at=now),
                execution_options={"synchronize_session": False},
            )
        for domain in domains:
            if domain in stored and domain not in noted:
                continue  # answered, and the bulk update said all there is to say
            instance = known.get(domain)
            if instance is None:
                instance = Instance(domain=domain, failures=0, unreachable=False, understands_groups=False)
                session.add(instance)
                if domain in ok_domains:
                    instance.last_success_at = now
            if domain in ok_domains:
                if domain in forms and instance.signature_form != forms[domain]:
                    # Remember a fallback to draft-cavage; RFC 9421 is only kept once it worked.
                    instance.signature_form = forms[domain]
                continue
            instance.failures = (instance.failures or 0) + 1
            instance.first_failure_at = instance.first_failure_at or now
            if now - instance.first_failure_at > UNREACHABLE_AFTER:
                instance.unreachable = True
                instance.probe_at = now + PROBE_EVERY


BUSY = (408, 425, 429)


def _unavailable(status: int | None) -> bool:
    """The peer did not take it because it is down or busy (no answer, 5xx, 408/425/429): the later
    activities for that inbox wait behind it. A 4xx about this activity (401, 403…) holds nothing back."""
    return status is None or status >= 500 or status in BUSY


def _retryable(status: int | None) -> bool:
    """A network failure, a 5xx or a 4xx that says "later" is tried again; other 4xx are final."""
    return not (status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX and status != 410)


def _signed_headers(inbox: str, body: bytes, key: SigningKey, form: SignatureForm) -> dict[str, str]:
    try:
        return sign_request("POST", inbox, {}, body, key, form=form)
    except (ValueError, httpx.InvalidURL) as exc:  # an inbox URL we cannot even parse
        raise FetchError(f"cannot sign for {inbox!r}: {exc}") from None


def _sign_all(requests: list[tuple[str, bytes, SigningKey, SignatureForm]]) -> list[_Signed]:
    """`_signed_headers` for each request, on a signer thread; a request that cannot be signed gets its reason."""
    signed: list[_Signed] = []
    for inbox, body, key, form in requests:
        try:
            signed.append(_signed_headers(inbox, body, key, form))
        except FetchError as refusal:
            signed.append(refusal)
    return signed
