"""Bluesky gates, replies and stats (issue 19): placeholder, filled in by that work

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
