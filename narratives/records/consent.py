"""A narrator's consent as recorded, and the report of a takedown it caused.

The ledger (`policy.consent`) checks consents and has `store.consents` write them; the takedown
(`workflow.takedown`) fills the reports. Both are plain records here so the front ends and the
ledger can carry a report without importing the workflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from narratives.core.clock import utcnow
from narratives.records.delivery import DeliveryState

__all__ = ["Consent", "TakenDown", "WithdrawalReport"]


@dataclass(frozen=True)
class Consent:
    """A narrative's consent as recorded (see `policy.consent.ConsentInput` for the fields)."""

    narrative_id: str
    given_by: str
    given_at: datetime
    method: str
    channels: tuple[str, ...]
    anonymous: bool = True
    expires_at: datetime | None = None
    withdrawn_at: datetime | None = None
    notes: str | None = None
    updated_at: datetime | None = None
    #: The row's version: a write names the one it read and raises it (compare-and-swap).
    version: int = 0
    #: Set by `workflow.takedown.set_consent` when the new consent covered less and posts were
    #: cancelled or taken down (not stored: the takedown has its own audit rows).
    takedown: WithdrawalReport | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> Consent:
        m = row._mapping
        return cls(
            narrative_id=m["narrative_id"],
            given_by=m["given_by"],
            given_at=m["given_at"],
            method=m["method"],
            channels=tuple(m["channels"] or ()),
            anonymous=bool(m["anonymous"]),
            expires_at=m["expires_at"],
            withdrawn_at=m["withdrawn_at"],
            notes=m["notes"],
            updated_at=m["updated_at"],
            version=m.get("version", 0),
        )

    def status(self, now: datetime | None = None) -> str:
        """`active`, `withdrawn` or `expired`."""
        now = now or utcnow()
        if self.withdrawn_at is not None:
            return "withdrawn"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        d["status"] = self.status()
        return d


@dataclass
class TakenDown:
    """What happened to one delivery of the narrative."""

    delivery_id: int
    draft_id: int
    campaign: str
    channel: str
    before: str
    #: cancelled | withdrawn | withdrawing (a takedown to finish: see `error`, or a publisher
    #: still posting it, which takes its posts down itself when it notices)
    after: str
    #: at:// URIs deleted from Bluesky.
    deleted: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class WithdrawalReport:
    narrative_id: str
    reason: str
    at: datetime
    #: withdraw | expire | narrow (a new consent covers less)
    action: str
    deliveries: list[TakenDown] = field(default_factory=list)
    #: Campaign slugs whose feeds were rebuilt without the narrative's items.
    feeds_rebuilt: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def cancelled(self) -> list[int]:
        return [t.delivery_id for t in self.deliveries if t.after == DeliveryState.CANCELLED]

    @property
    def withdrawn(self) -> list[int]:
        return [t.delivery_id for t in self.deliveries if t.after == DeliveryState.WITHDRAWN]

    @property
    def pending(self) -> list[int]:
        """Deliveries a live publisher still holds: it takes their posts down itself when it
        notices the withdrawal (seconds later), so they are neither done nor failed."""
        return [
            t.delivery_id
            for t in self.deliveries
            if t.after == DeliveryState.WITHDRAWING and not t.error
        ]

    @property
    def deleted_posts(self) -> list[str]:
        return [u for t in self.deliveries for u in t.deleted]

    @property
    def complete(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "narrative_id": self.narrative_id,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "action": self.action,
            "deliveries": [asdict(t) for t in self.deliveries],
            "cancelled": self.cancelled,
            "withdrawn": self.withdrawn,
            "pending": self.pending,
            "deleted_posts": self.deleted_posts,
            "feeds_rebuilt": self.feeds_rebuilt,
            "errors": self.errors,
            "complete": self.complete,
        }
