"""anonymity (issue 14): no schema change was needed; kept so that databases which applied
this slot stay on a linear chain

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
