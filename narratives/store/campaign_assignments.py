"""The one owner of writes to `campaign_assignments`, the campaigns staff chose for a story.

The table is append-only: one row per real change, the latest row per (narrative, campaign)
wins, and every row has its `campaign.assign` / `campaign.unassign` audit row in the caller's
transaction. Which changes are allowed, and the lock on the narrative's row that serialises
writers, are `policy.campaign_assignments`, which checks first and then calls this.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from narratives.store import audit
from narratives.store.schema import campaign_assignments

__all__ = ["insert_assignment"]


def insert_assignment(
    conn: Connection,
    narrative_id: str,
    campaign: str,
    *,
    assigned: bool,
    source: str,
    actor: str,
    now: datetime,
    was_assigned: bool | None,
) -> int:
    """Append the choice (`was_assigned`: the row it supersedes said so; None, no row) and
    its audit row; returns the new row's id."""
    verb = "assign" if assigned else "unassign"
    new_id: int = conn.execute(
        campaign_assignments.insert().values(
            narrative_id=narrative_id,
            campaign=campaign,
            assigned=assigned,
            source=source,
            actor=actor,
            at=now,
        )
    ).inserted_primary_key[0]
    audit.record(
        conn,
        actor=actor,
        action=f"campaign.{verb}",
        object_type="narrative",
        object_id=narrative_id,
        before=None if was_assigned is None else {"campaign": campaign, "assigned": was_assigned},
        after={"campaign": campaign, "assigned": assigned, "source": source},
        detail=f"{verb}ed {'to' if assigned else 'from'} {campaign} ({source})",
    )
    return new_id
