"""campaign_assignments: which campaign staff said a story is for (or not for)

Append-only: one row per explicit choice, the latest row per (narrative, campaign) wins.
`assigned` is True for an assignment and False for an explicit unassignment; `source` says where
the choice was made (intake, sidecar, cli, web). See `narratives/assignments.py`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("narrative_id", sa.String(length=64), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("assigned", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["narrative_id"], ["narratives.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_campaign_assignments_target",
        "campaign_assignments",
        ["narrative_id", "campaign"],
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_assignments_target", table_name="campaign_assignments")
    op.drop_table("campaign_assignments")
