"""A delivery as every layer reads it, and its states.

One draft goes to one channel as one delivery (docs/architecture.md, "Deliveries: states and
claims"): `scheduled → publishing → published | failed(retry_at) | missed`, and `cancelled`,
`withdrawing → withdrawn` for takedowns. The states are named once here, with the sets the rules
ask about; the database column stays a plain string (a StrEnum compares equal to it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "DeliveryState",
    "OPEN",
    "WAITING",
    "OUT",
    "LIVE",
    "STOPPED",
    "TAKEN_DOWN",
    "Delivery",
]


class DeliveryState(StrEnum):
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    #: With a `retry_at` it waits for a retry; without, publishing stopped (see `last_error`).
    FAILED = "failed"
    #: Never went out: its time passed while no scheduler ran (see `store.deliveries.is_late`).
    MISSED = "missed"
    CANCELLED = "cancelled"
    #: Being taken down: no publisher may write it, its posts are being deleted.
    WITHDRAWING = "withdrawing"
    WITHDRAWN = "withdrawn"


S = DeliveryState

#: States in which a delivery holds its draft and its posting slot: at most one such delivery
#: per draft (a unique index, migration 0004); cancelled, missed and withdrawn ones free both.
OPEN = (S.SCHEDULED, S.PUBLISHING, S.PUBLISHED, S.FAILED)
#: States from which a delivery may still be cancelled or moved: it has not gone out.
WAITING = (S.SCHEDULED, S.FAILED)
#: States in which a delivery is, or may be, on the server: a takedown deletes it.
OUT = (S.PUBLISHING, S.PUBLISHED, S.WITHDRAWING)
#: States with something to stop or take down when consent ends.
LIVE = (*WAITING, *OUT)
#: Closed without going out as planned; one that was attempted may still have a post up.
STOPPED = (S.CANCELLED, S.MISSED)
#: A takedown started or done: a publisher that finds its delivery so takes its posts down.
TAKEN_DOWN = (S.WITHDRAWING, S.WITHDRAWN)


@dataclass(frozen=True)
class Delivery:
    id: int
    draft_id: int
    campaign: str
    channel: str
    state: str
    scheduled_at: datetime
    rkey: str | None
    attempts: int
    retry_at: datetime | None
    last_error: str | None
    published_at: datetime | None
    posts: list[dict[str, Any]] | None
    created_at: datetime
    updated_at: datetime
    #: The process publishing it ("host:pid:token") and when it last showed progress.
    claimed_by: str | None = None
    claimed_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        return d

    @property
    def landed_posts(self) -> list[dict[str, Any]]:
        """The posts of this delivery known to be on the server (those with a stored URI)."""
        return [p for p in self.posts or () if p.get("uri")]

    @property
    def wake_at(self) -> datetime | None:
        """When the scheduler should next look at this delivery (None: nothing to do)."""
        if self.state == S.SCHEDULED:
            return self.scheduled_at
        if self.state == S.FAILED and self.retry_at is not None:
            return self.retry_at
        return None
