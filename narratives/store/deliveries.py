"""Rules about delivery rows that every layer above reads: whether a publish was ever attempted
and whether a publisher's claim on a delivery is stale.

They lived in the scheduling and publishing modules, which made the consent ledger import the
workflow. This is the start of the one owner of the deliveries table (issue 17).
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from narratives.store.schema import deliveries, delivery_attempts

__all__ = ["CLAIM_LEASE", "new_claim_owner", "claim_is_stale", "was_attempted"]

#: A claim with no progress for this long is abandoned.
CLAIM_LEASE = timedelta(minutes=5)


def new_claim_owner() -> str:
    """A unique claim owner: `host:pid:token`, so a restarted process can tell a claim of a
    dead process on this host from one still being worked on."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_is_stale(claimed_by: str | None, claimed_at: datetime | None, now: datetime) -> bool:
    """True when nobody is working on a claim any more: no owner recorded, an owner process on
    this host that no longer exists, or no progress for `CLAIM_LEASE`."""
    if not claimed_by or claimed_at is None or now - claimed_at > CLAIM_LEASE:
        return True
    host, _, rest = claimed_by.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def was_attempted() -> Any:
    """True for a delivery with any publish attempt on record. `deliveries.attempts` counts
    attempts since the last `move` (for backoff), so it cannot say whether a post may be out."""
    return sa.exists().where(delivery_attempts.c.delivery_id == deliveries.c.id)
