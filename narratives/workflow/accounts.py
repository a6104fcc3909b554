"""The Bluesky accounts the campaigns post as: check their app passwords, end their saved
sessions, and put back in line the deliveries a credentials failure stopped (issue 19).

A saved session outlives a revoked app password (the server keeps honouring its tokens for up
to about two hours), so `check` logs in afresh with the password, and a refusal forgets the
saved session: from then on posts fail at once with the credentials error instead of going out
on the old session. Once the password is fixed, `retry_credential_failures` moves every
delivery such a failure stopped back to now, in one go.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from narratives.channels.bluesky.post import BlueskyAccount, is_credential_failure
from narratives.core.campaigns import BLUESKY, load_campaigns
from narratives.core.clock import utcnow
from narratives.core.errors import ChannelError, NotFound
from narratives.records.delivery import DeliveryState
from narratives.store.context import Context
from narratives.store.schema import deliveries
from narratives.workflow import scheduling

__all__ = [
    "AccountCheck",
    "LogoutResult",
    "accounts_of",
    "check",
    "logout",
    "retry_credential_failures",
]


@dataclass
class AccountCheck:
    handle: str
    service: str
    password_env: str
    campaigns: list[str] = field(default_factory=list)
    ok: bool = False
    did: str | None = None
    error: str | None = None
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def accounts_of(ctx: Context, campaign: str | None = None) -> dict[BlueskyAccount, list[str]]:
    """The distinct Bluesky accounts of the campaigns (or of one), with the campaigns using each."""
    found: dict[BlueskyAccount, list[str]] = {}
    campaigns = load_campaigns(ctx.workspace)
    if campaign is not None and campaign not in {c.slug for c in campaigns}:
        raise NotFound(f"no campaign {campaign!r}", hint="see `narrative campaigns list`")
    for c in campaigns:
        cfg = c.channels.bluesky
        if cfg is None or (campaign is not None and c.slug != campaign):
            continue
        account = BlueskyAccount(cfg.handle, cfg.service, cfg.password_env)
        found.setdefault(account, []).append(c.slug)
    return found


def check(ctx: Context, campaign: str | None = None) -> list[AccountCheck]:
    """Log in to each account afresh with its app password; a refusal forgets its session."""
    # The atproto SDK takes about a second to import: only when accounts are checked.
    from narratives.channels.bluesky.client import BlueskyChannel

    out = []
    for account, slugs in accounts_of(ctx, campaign).items():
        result = AccountCheck(account.handle, account.service_url, account.password_env, slugs)
        try:
            with BlueskyChannel(account, ctx.workspace) as channel:
                result.did = channel.check_login()
                result.ok = True
        except ChannelError as exc:
            result.error, result.hint = str(exc), exc.hint
        out.append(result)
    return out


@dataclass
class LogoutResult:
    handle: str
    #: Whether a saved session was found (and is now forgotten here).
    had_session: bool
    #: Why the server did not end it (refused or unreachable); None when it did.
    error: str | None = None
    hint: str | None = None


def logout(ctx: Context, campaign: str | None = None) -> list[LogoutResult]:
    """End each account's saved session, on the server and here; one result per account. A
    session the server does not end is still forgotten here, and its result says why."""
    from narratives.channels.bluesky.client import BlueskyChannel

    out = []
    for account in accounts_of(ctx, campaign):
        result = LogoutResult(account.handle, had_session=True)
        try:
            with BlueskyChannel(account, ctx.workspace) as channel:
                result.had_session = channel.logout()
        except ChannelError as exc:
            result.error, result.hint = str(exc), exc.hint
        out.append(result)
    return out


def retry_credential_failures(
    ctx: Context, campaign: str | None = None, *, actor: str
) -> list[int]:
    """Move every Bluesky delivery that a credentials failure stopped back to now (audited,
    each like `narrative schedule move`); returns their ids."""
    now = utcnow()
    q = sa.select(deliveries.c.id, deliveries.c.last_error).where(
        deliveries.c.state == DeliveryState.FAILED,
        deliveries.c.retry_at.is_(None),
        deliveries.c.channel == BLUESKY,
    )
    if campaign is not None:
        q = q.where(deliveries.c.campaign == campaign)
    with ctx.db.connect() as conn:
        ids = [
            r.id
            for r in conn.execute(q.order_by(deliveries.c.id))
            if is_credential_failure(r.last_error)
        ]
    moved = []
    for delivery_id in ids:
        scheduling.move(ctx, delivery_id, at=now, actor=actor, now=now)
        moved.append(delivery_id)
    return moved
