"""deliveries.claimed_by / claimed_at: who is publishing a delivery, and since when (a lease)

A `publishing` delivery is handed back to the scheduler only when its claim has lapsed (its
process is gone, or it has not shown progress for a while), never while another process such
as `narrative publish --now` is still posting it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
