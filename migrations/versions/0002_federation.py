"""federation: follows, votes, instances, the outgoing and received activity queues

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:09:52.332972
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import forum.models.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("software", sa.String(length=64), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("understands_groups", sa.Boolean(), nullable=False),
        sa.Column("signature_form", sa.String(length=16), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", forum.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", forum.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unreachable", sa.Boolean(), nullable=False),
        sa.Column("probe_at", forum.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("nodeinfo_fetched_at", forum.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", forum.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.UniqueConstraint("domain", name=op.f("uq_instances_domain")),
    )
    op.create_table(
        "received_activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ap_id", sa.String(length=2048), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("actor_ap_id", sa.String(length=2048), nullable=False),
        sa.Column("signer_key_id", sa.String(length=2048), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued", "processing", "done", "refused", "failed", name="receivedstate", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", forum.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", forum.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("received_at", forum.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", forum.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_received_activities")),
        sa.UniqueConstraint("ap_id", name=op.f("uq_received_activities_ap_id")),
    )
    with op.batch_alter_table("received_activities", schema=None) as batch_op:
        batch_op.create_index("ix_received_activities_due", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "outgoing_activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ap_id", sa.String(length=2048), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", forum.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_outgoing_activities_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_activities")),
        sa.UniqueConstraint("ap_id", name=op.f("uq_outgoing_activities_ap_id")),
    )
    with op.batch_alter_table("outgoing_activities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outgoing_activities_actor_id"), ["actor_id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("inbox_url", sa.String(length=2048), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued", "sending", "delivered", "failed", "gone", name="deliverystate", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", forum.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", forum.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", forum.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", forum.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["outgoing_activities.id"],
            name=op.f("fk_deliveries_activity_id_outgoing_activities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_activity_id"), ["activity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_domain"), ["domain"], unique=False)
        batch_op.create_index("ix_deliveries_due", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "follows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("follower_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("thread_id", sa.Integer(), nullable=True),
        sa.Column(
            "state", sa.Enum("pending", "accepted", name="followstate", native_enum=False, length=16), nullable=False
        ),
        sa.Column("activity_id", sa.String(length=2048), nullable=True),
        sa.Column("created_at", forum.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["follower_id"], ["actors.id"], name=op.f("fk_follows_follower_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["actors.id"], name=op.f("fk_follows_target_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_follows_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follows")),
        sa.UniqueConstraint("follower_id", "target_id", name="uq_follows_follower_target"),
        sa.UniqueConstraint("follower_id", "thread_id", name="uq_follows_follower_thread"),
    )
    with op.batch_alter_table("follows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_follows_activity_id"), ["activity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_follows_target_id"), ["target_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_follows_thread_id"), ["thread_id"], unique=False)

    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.SmallInteger(), nullable=False),
        sa.Column("activity_id", sa.String(length=2048), nullable=True),
        sa.Column("created_at", forum.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["actors.id"], name=op.f("fk_votes_actor_id_actors"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], name=op.f("fk_votes_post_id_posts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_votes")),
        sa.UniqueConstraint("post_id", "actor_id", name="uq_votes_post_actor"),
    )
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_votes_activity_id"), ["activity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_votes_actor_id"), ["actor_id"], unique=False)

    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("featured_url", sa.String(length=2048), nullable=True))
        batch_op.add_column(
            sa.Column("manually_approves_followers", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("gone_at", forum.models.base.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approve_followers", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(
            sa.Column("posting_restricted_to_mods", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upvotes", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch_op.add_column(sa.Column("downvotes", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch_op.add_column(sa.Column("remote_url", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.drop_column("remote_url")
        batch_op.drop_column("downvotes")
        batch_op.drop_column("upvotes")

    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.drop_column("posting_restricted_to_mods")
        batch_op.drop_column("approve_followers")

    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.drop_column("gone_at")
        batch_op.drop_column("manually_approves_followers")
        batch_op.drop_column("featured_url")

    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_votes_actor_id"))
        batch_op.drop_index(batch_op.f("ix_votes_activity_id"))

    op.drop_table("votes")
    with op.batch_alter_table("follows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_follows_thread_id"))
        batch_op.drop_index(batch_op.f("ix_follows_target_id"))
        batch_op.drop_index(batch_op.f("ix_follows_activity_id"))

    op.drop_table("follows")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_deliveries_domain"))
        batch_op.drop_index(batch_op.f("ix_deliveries_activity_id"))

    op.drop_table("deliveries")
    with op.batch_alter_table("outgoing_activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outgoing_activities_actor_id"))

    op.drop_table("outgoing_activities")
    with op.batch_alter_table("received_activities", schema=None) as batch_op:
        batch_op.drop_index("ix_received_activities_due")

    op.drop_table("received_activities")
    op.drop_table("instances")
