"""The delivery worker: takes due rows of the `deliveries` queue, signs and posts them, records the outcome.

Rows move queued -> sending -> delivered | queued (retry, with backoff) | failed | gone. A worker holds
the rows it took for a lease; rows whose lease ran out (a worker killed mid-batch) are taken again. On
PostgreSQL many workers share the queue with `FOR UPDATE SKIP LOCKED`. Concurrency is bounded overall
and per instance, and spread over several HTTP clients (one httpx client slows sharply past ~10
concurrent connections). An instance failing for days is marked unreachable: its rows wait, and one
is tried every few hours to see whether it answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activitypub.protocol.backoff import GIVE_UP_AFTER, next_delay
from activitypub.protocol.client import FetchError, GuardedClient
from activitypub.protocol.signatures import HttpSignatureAuth, SignatureForm, SigningKey
from forum.models import Actor, Delivery, DeliveryState, Instance, OutgoingActivity
from forum.models.base import utcnow

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
UNREACHABLE_AFTER = timedelta(days=2)
PROBE_EVERY = timedelta(hours=6)
RETRYABLE_4XX = {401, 403, 408, 425, 429}


@dataclass
class Outcome:
    delivery_id: int
    domain: str
    status: int | None
    error: str | None = None
    retry_after: float | None = None
    # The signature form the peer took, when it took one.
    form: str | None = None


@dataclass
class _Batch:
    rows: list[tuple[int, int, str, str, int, datetime]]
    bodies: dict[int, bytes] = field(default_factory=dict)
    keys: dict[int, SigningKey] = field(default_factory=dict)
    forms: dict[str, str | None] = field(default_factory=dict)


class DeliveryWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clients: Sequence[GuardedClient],
        *,
        batch_size: int = 500,
        concurrency: int = 64,
        per_instance: int = 4,
    ) -> None:
        assert clients, "the worker needs at least one HTTP client"
        self._sessions = sessions
        self._clients = list(clients)
        self._batch_size = batch_size
        self._concurrency = asyncio.Semaphore(concurrency)
        self._per_instance = per_instance
        self._keys: dict[str, SigningKey] = {}

    async def run(self, idle: float = 0.5) -> None:
        while True:
            try:
                done = await self.run_once()
            except Exception:  # the queue is durable: log, wait, try again
                log.exception("delivery batch failed")
                done = 0
            if done == 0:
                await asyncio.sleep(idle)

    async def run_once(self) -> int:
        """Take one batch of due deliveries, send them, record what happened; returns how many were taken."""
        batch = await self._claim()
        if not batch.rows:
            return 0
        slots: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self._per_instance))
        outcomes = await asyncio.gather(*(self._send(batch, row, slots[row[3]]) for row in batch.rows))
        await self._record(batch, outcomes)
        return len(batch.rows)

    async def _claim(self) -> _Batch:
        now = utcnow()
        async with self._sessions() as session, session.begin():
            waiting = select(Instance.domain).where(Instance.unreachable.is_(True), Instance.probe_at > now)
            due = (
                select(Delivery.id)
                .where(
                    or_(
                        and_(Delivery.state == DeliveryState.QUEUED, Delivery.next_attempt_at <= now),
                        and_(Delivery.state == DeliveryState.SENDING, Delivery.locked_until < now),
                    ),
                    Delivery.domain.not_in(waiting),
                )
                .order_by(Delivery.next_attempt_at)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )
            ids = list(await session.scalars(due))
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

    def _signing_key(self, key_id: str, pem: str) -> SigningKey:
        # Loading a PEM costs more than a signature: keep each actor's loaded key.
        key = self._keys.get(key_id)
        if key is None:
            key = self._keys[key_id] = SigningKey(key_id, pem)
        return key

    async def _send(
        self, batch: _Batch, row: tuple[int, int, str, str, int, datetime], slot: asyncio.Semaphore
    ) -> Outcome:
        delivery_id, activity_id, inbox, domain, _attempts, _created = row
        body, key = batch.bodies.get(activity_id), batch.keys.get(activity_id)
        if body is None or key is None:
            return Outcome(delivery_id, domain, None, "the activity or its actor's key is gone")
        client = self._clients[hash(domain) % len(self._clients)]
        known = batch.forms.get(domain)
        first: SignatureForm = "rfc9421" if known == "rfc9421" else "cavage"
        async with self._concurrency, slot:
            outcome = await self._post(client, delivery_id, domain, inbox, body, key, first)
            if first == "rfc9421" and outcome.status in (400, 401, 403):
                # Double-knocking: a peer that refuses one form is asked again in the other, and remembered.
                outcome = await self._post(client, delivery_id, domain, inbox, body, key, "cavage")
            elif first == "cavage":
                outcome.form = None  # nothing learnt: draft-cavage is what everyone is sent first
        return outcome

    async def _post(
        self,
        client: GuardedClient,
        delivery_id: int,
        domain: str,
        inbox: str,
        body: bytes,
        key: SigningKey,
        form: SignatureForm,
    ) -> Outcome:
        try:
            result = await client.post(inbox, body, auth=HttpSignatureAuth(key, form=form))
        except FetchError as failure:
            return Outcome(delivery_id, domain, failure.status, failure.reason[:500])
        refused = None if 200 <= result.status < 300 else f"HTTP {result.status}: {result.body_excerpt[:200]}"
        return Outcome(delivery_id, domain, result.status, refused, result.retry_after, form)

    async def _record(self, batch: _Batch, outcomes: list[Outcome]) -> None:
        now = utcnow()
        by_id = {row[0]: row for row in batch.rows}
        delivered = [o.delivery_id for o in outcomes if o.status is not None and 200 <= o.status < 300]
        ok_domains = {o.domain for o in outcomes if o.status is not None and 200 <= o.status < 300}
        failing_domains = {o.domain for o in outcomes if o.status is None or o.status >= 500} - ok_domains
        async with self._sessions() as session, session.begin():
            if delivered:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(delivered))
                    .values(state=DeliveryState.DELIVERED, delivered_at=now, locked_until=None, last_status=200)
                )
            for outcome in outcomes:
                if outcome.delivery_id in delivered:
                    continue
                _, _, inbox, _, attempts, created = by_id[outcome.delivery_id]
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == outcome.delivery_id)
                    .values(**self._retry(outcome, attempts, created, now))
                )
                if outcome.status == 410:
                    await session.execute(update(Actor).where(Actor.inbox_url == inbox).values(gone_at=now))
            await self._instance_health(session, batch, outcomes, ok_domains, failing_domains, now)

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
        elif status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
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
        known = {
            instance.domain: instance
            for instance in await session.scalars(select(Instance).where(Instance.domain.in_(domains)))
        }
        healthy = [domain for domain in ok_domains if domain in known]
        if healthy:
            # One statement for every instance that answered (a fan-out reaches thousands), not one each.
            await session.execute(
                update(Instance)
                .where(Instance.domain.in_(healthy))
                .values(failures=0, first_failure_at=None, unreachable=False, probe_at=None, last_success_at=now),
                execution_options={"synchronize_session": False},
            )
        for domain in domains:
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
