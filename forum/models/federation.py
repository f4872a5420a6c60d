"""Federation plumbing: follows, votes, the instances we know, and the two durable queues.

Outgoing activities are written in the transaction of the change that caused them, with one delivery
row per target inbox (a transactional outbox); received activities are stored before the `202` and
processed by the worker. Both queues carry an explicit state, an attempt count and a next-attempt time.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Index, Integer, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from forum.models.base import Base, utcnow


def _enum(kind: type[enum.Enum]) -> Enum:
    return Enum(kind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class FollowState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"


class Follow(Base):
    """An actor follows an actor (a category's Group, a member) or a thread's context collection."""

    __tablename__ = "follows"
    __table_args__ = (
        UniqueConstraint("follower_id", "target_id", name="uq_follows_follower_target"),
        UniqueConstraint("follower_id", "thread_id", name="uq_follows_follower_thread"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    follower_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    # Exactly one of target_id / thread_id is set.
    target_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    state: Mapped[FollowState] = mapped_column(_enum(FollowState))
    # The `Follow` activity's id: an `Accept`, `Reject` or `Undo` names it.
    activity_id: Mapped[str | None] = mapped_column(String(2048), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A member's watch of a thread: how many of its posts (numbered 1, 2, 3…) they have seen.
    last_read_position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Vote(Base):
    """One actor's up (+1) or down (-1) vote on a post; `Like` and `Dislike` on the wire."""

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("post_id", "actor_id", name="uq_votes_post_actor"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    value: Mapped[int] = mapped_column(SmallInteger)
    activity_id: Mapped[str | None] = mapped_column(String(2048), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Instance(Base):
    """A remote server: what it runs, which signature form it accepts, and whether it answers."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Host with its port when not the default one, as in actor ids.
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    software: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(64))
    # Whether its software reads FEP-1b12 Groups (Lemmy, PieFed, Mbin, NodeBB…): it then gets replies too.
    understands_groups: Mapped[bool] = mapped_column(Boolean, default=False)
    # "rfc9421" once it accepted one; "cavage" once it refused one (double-knocking, remembered).
    signature_form: Mapped[str | None] = mapped_column(String(16))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime | None] = mapped_column()
    last_success_at: Mapped[datetime | None] = mapped_column()
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    # While unreachable, deliveries wait; one is tried at this time to see whether it answers again.
    probe_at: Mapped[datetime | None] = mapped_column()
    nodeinfo_fetched_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutgoingActivity(Base):
    """An activity one of our actors sent: its JSON is kept so its id can be dereferenced and redelivered."""

    __tablename__ = "outgoing_activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    ap_id: Mapped[str] = mapped_column(String(2048), unique=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    document: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    # Retried for about three days, or refused for good by a 4xx other than 401/408/429.
    FAILED = "failed"
    # The target answered 410: the actor is gone; nothing more is sent to it.
    GONE = "gone"


class Delivery(Base):
    """One activity to one inbox (a shared inbox serves every follower on its instance)."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("outgoing_activities.id", ondelete="CASCADE"), index=True)
    inbox_url: Mapped[str] = mapped_column(String(2048))
    domain: Mapped[str] = mapped_column(String(255), index=True)
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState), default=DeliveryState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A worker that takes a row holds it until then; a worker killed mid-batch leaves rows that expire.
    locked_until: Mapped[datetime | None] = mapped_column()
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


class ReceivedState(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    # Verified but refused by policy or by the handler (the reason is kept).
    REFUSED = "refused"
    # A handler failed for a reason that may pass (a parent not fetchable yet): retried with backoff.
    FAILED = "failed"


class ReceivedActivity(Base):
    """A verified incoming activity, stored before the `202` and processed by the worker."""

    __tablename__ = "received_activities"
    __table_args__ = (Index("ix_received_activities_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique: the same activity delivered twice (to a shared and a personal inbox, or retried) is one row.
    ap_id: Mapped[str] = mapped_column(String(2048), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    actor_ap_id: Mapped[str] = mapped_column(String(2048))
    # Who signed the request; differs from the actor for forwarded activities carrying their own proof.
    signer_key_id: Mapped[str] = mapped_column(String(2048))
    document: Mapped[dict[str, object]] = mapped_column(JSON)
    state: Mapped[ReceivedState] = mapped_column(_enum(ReceivedState), default=ReceivedState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column()
