"""Who holds a delivery while it is published: claim owners and when a claim is stale.

A publisher claims a delivery under an owner `host:pid:token`; the claim is a lease that each
post of a thread refreshes. A claim is stale when its owner process on this host is gone, or it
showed no progress for `CLAIM_LEASE`: only then is it handed back or overruled.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

__all__ = ["CLAIM_LEASE", "new_claim_owner", "claim_is_stale"]

#: A claim that has shown no progress for this long is stale even if its owner may be alive
#: (another host, or a hung process). Progress (each post of a thread) refreshes it.
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
