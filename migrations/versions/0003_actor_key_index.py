"""actors: index on key_id (every signed inbox request looks its signer up by it)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 15:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_actors_key_id", "actors", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_actors_key_id", table_name="actors")
