"""The consent ledger: what each narrator agreed to, checked wherever something goes public.

One `consents` row per narrative: who gave consent, when, how (form, recording, in person),
for which channels, whether the narrator must stay anonymous (the default: the safe choice),
and until when. Review approval, scheduling and publishing ask `check_approvable` /
`check_publishable`; both raise `ConsentError` with the reason. The ledger decides whether a
change is allowed; `store.consents` writes it, with its audit row in the same transaction.

The ledger only records and checks. What a change means for deliveries already scheduled or
out (cancel, delete posts, rebuild feeds) is `workflow.takedown`, which calls
`record_consent` and `record_withdrawal` and then acts. Sidecar files are `policy.sidecar`.

Design choices that are not obvious:

- **Roles.** Any editor records a narrator's first consent, narrows it or withdraws it; only an
  admin may make a recorded consent allow more (see `_widens`).
- **A withdrawn consent stays withdrawn.** Once withdrawn, a consent can only be replaced by
  one given after the withdrawal.
- **Dates.** A bare date (`expires_at = 2027-01-01`) means the start of that day in UTC, the
  earlier reading; a naive time is read as UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Connection

from narratives.core.campaigns import CHANNELS as CHANNEL_INFO
from narratives.core.clock import utcnow
from narratives.core.errors import (
    ConfigError,
    Conflict,
    ConsentError,
    NotFound,
    PermissionDenied,
    UsageError,
)
from narratives.records.consent import Consent
from narratives.store.consents import load_consent, mark_withdrawn, write_consent
from narratives.store.context import Context
from narratives.store.schema import drafts, narratives, users

__all__ = [
    "METHODS",
    "CHANNELS",
    "ConsentInput",
    "get_consent",
    "validate_consent",
    "save_consent",
    "record_consent",
    "record_withdrawal",
    "consent_problem",
    "check_approvable",
    "check_publishable",
    "check",
    "is_anonymous",
]

METHODS = ("form", "recording", "in_person")
CHANNELS = tuple(CHANNEL_INFO)
#: Dates a consent may carry: given no earlier than 1900 and no later than a day from now
#: (time zones), expiring within a century.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
GIVEN_AHEAD = timedelta(days=1)
EXPIRES_WITHIN = timedelta(days=100 * 365)


# ----------------------------------------------------------------------------- records


def _as_utc(value: datetime | date | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0, 0), tzinfo=UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ConsentInput(BaseModel):
    """Consent as given: validated at the edge (CLI, sidecar files, web forms)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    given_by: str = Field(min_length=1, max_length=200)
    #: Default: when it is recorded.
    given_at: datetime | date | None = None
    method: Literal["form", "recording", "in_person"]
    #: Names from `core.campaigns.CHANNELS` (checked by `_known`, so a new channel needs no
    #: edit here).
    channels: list[str] = Field(min_length=1)
    anonymous: bool = True
    expires_at: datetime | date | None = None
    notes: str | None = Field(default=None, max_length=4000)

    @field_validator("given_by")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must name who gave consent")
        return v

    @field_validator("channels")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in CHANNELS]
        if unknown:
            raise ValueError(
                f"unknown channel {unknown[0]!r}; channels: {', '.join(map(repr, CHANNELS))}"
            )
        # One canonical order, without repeats.
        return [c for c in CHANNELS if c in v]

    @field_validator("given_at", "expires_at")
    @classmethod
    def _utc(cls, v: datetime | date | None, info) -> datetime | None:
        value = _as_utc(v)
        if value is None:
            return None
        if value < EARLIEST:
            raise ValueError(f"{value:%Y-%m-%d} is before {EARLIEST:%Y}; check the year")
        now = utcnow()
        if info.field_name == "given_at" and value > now + GIVEN_AHEAD:
            raise ValueError(
                f"{value:%Y-%m-%d} is in the future; give the date the narrator agreed"
            )
        if info.field_name == "expires_at" and value > now + EXPIRES_WITHIN:
            raise ValueError(
                f"{value:%Y-%m-%d} is more than {EXPIRES_WITHIN.days // 365} years ahead; "
                "leave it empty for a consent that does not expire"
            )
        return value

    def given_at_utc(self, now: datetime) -> datetime:
        return self.given_at if isinstance(self.given_at, datetime) else now


# ----------------------------------------------------------------------------- ledger


def get_consent(ctx: Context, narrative_id: str) -> Consent | None:
    """The narrative's consent, or None when none is recorded."""
    with ctx.db.connect() as conn:
        return load_consent(conn, narrative_id)


def _require_narrative(conn: Connection, narrative_id: str) -> None:
    found = conn.execute(sa.select(narratives.c.id).where(narratives.c.id == narrative_id)).first()
    if found is None:
        raise NotFound(f"no narrative {narrative_id[:12]}", hint="see `narrative status`")


def validate_consent(fields: dict[str, Any], where: str) -> ConsentInput:
    try:
        return ConsentInput.model_validate(fields)
    except ValidationError as exc:
        lines = [f"{where}: invalid consent"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(file)"
            lines.append(f"  {key}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def save_consent(
    conn: Connection,
    narrative_id: str,
    given: ConsentInput,
    *,
    actor: str,
    action: str,
    detail: str | None = None,
    expected: Consent | None | bool = True,
) -> Consent:
    """Record `given` as the narrative's consent in the caller's transaction, once the ledger's
    rules allow it: the narrative exists, the consent ends after it was given, and a withdrawn
    consent is only replaced by one given after the withdrawal. With `expected` (the consent
    the caller's checks read), only if that is still the one recorded (else `Conflict`)."""
    now = utcnow()
    _require_narrative(conn, narrative_id)
    before = load_consent(conn, narrative_id) if expected is True else expected
    given_at = given.given_at_utc(now)
    if given.expires_at is not None and given.expires_at <= given_at:
        raise UsageError("the consent's expiry date must be after the date it was given")
    if before is not None and before.withdrawn_at is not None and given_at <= before.withdrawn_at:
        raise ConsentError(
            f"consent for narrative {narrative_id[:12]} was withdrawn on "
            f"{before.withdrawn_at:%Y-%m-%d %H:%M} UTC; only a consent given after that "
            "can replace it",
            hint="record the new consent with the date it was given (--given-at)",
        )
    return write_consent(
        conn,
        narrative_id,
        given_by=given.given_by,
        given_at=given_at,
        method=given.method,
        channels=given.channels,
        anonymous=given.anonymous,
        expires_at=given.expires_at,
        notes=given.notes,
        now=now,
        actor=actor,
        action=action,
        detail=detail,
        expected=before,
    )


def record_consent(
    ctx: Context,
    narrative_id: str,
    *,
    given_by: str,
    method: str,
    channels: Sequence[str],
    anonymous: bool = True,
    given_at: datetime | date | None = None,
    expires_at: datetime | date | None = None,
    notes: str | None = None,
    actor: str,
    expected_version: int | None | Literal["any"] = "any",
) -> tuple[Consent | None, Consent]:
    """Record (or replace) a narrative's consent; returns the consent it replaced and the new
    one. ConfigError for invalid values. Deliveries it no longer covers are for
    `workflow.takedown.set_consent`, which callers use.

    `expected_version` is the version of the consent the caller's form was made from (None:
    none was recorded then): if it is not the one recorded now, `Conflict` and nothing is
    saved, so a stale form cannot undo a change made since. "any": no such check."""
    given = validate_consent(
        {
            "given_by": given_by,
            "method": method,
            "channels": list(channels),
            "anonymous": anonymous,
            "given_at": given_at,
            "expires_at": expires_at,
            "notes": notes,
        },
        f"consent for {narrative_id[:12]}",
    )
    with ctx.db.begin() as conn:
        before = load_consent(conn, narrative_id)
        if expected_version != "any" and expected_version != (before.version if before else None):
            raise Conflict(
                f"the consent for narrative {narrative_id[:12]} was changed by someone else "
                "since this form was opened; nothing was saved",
                hint="look at it again (reload the page) and retry",
            )
        if before is not None and before.withdrawn_at is None and given.given_at is None:
            # No date given for a change of a standing consent: it was given when it was.
            given = given.model_copy(update={"given_at": before.given_at})
        widened = _widens(before, given)
        if widened:
            _require_admin(conn, actor, narrative_id, widened)
        rewritten = _rewrites(before, given)
        if rewritten:
            _require_admin(conn, actor, narrative_id, rewritten, what="rewrite")
        after = save_consent(
            conn,
            narrative_id,
            given,
            actor=actor,
            action="consent.set",
            detail=rewritten,
            expected=before,
        )
    return before, after


def _rewrites(before: Consent | None, given: ConsentInput) -> str | None:
    """How a change of a standing consent rewrites its record: who gave it, or when. Only an
    admin may (a wrong name or date is corrected; a backdated consent would cover posts made
    before the narrator agreed), and the audit row says so."""
    if before is None or before.withdrawn_at is not None:
        return None
    changed = []
    if given.given_by != before.given_by:
        changed.append(f"who gave it ({before.given_by} → {given.given_by})")
    if given.given_at is not None and _aware(given.given_at) != _aware(before.given_at):
        changed.append(f"its date ({before.given_at:%Y-%m-%d} → {_aware(given.given_at):%Y-%m-%d})")
    return "changes " + " and ".join(changed) if changed else None


def _widens(before: Consent | None, given: ConsentInput) -> str | None:
    """How a new consent allows more than the recorded one (None when it does not).

    Roles: any editor records a narrator's first consent, narrows it or withdraws it; only an
    admin may make a recorded consent allow more (a channel, the name, a later end, consent
    again after a withdrawal), because that is what lets a story reach further."""
    if before is None:
        return None
    if before.withdrawn_at is not None:
        return "it was withdrawn"
    added = sorted(set(given.channels) - set(before.channels))
    if added:
        return f"it adds {', '.join(added)}"
    if before.anonymous and not given.anonymous:
        return "it names the narrator"
    new_end = given.expires_at
    old_end = before.expires_at
    if old_end is not None and (new_end is None or _aware(new_end) > _aware(old_end)):
        return "it ends later"
    return None


def _aware(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _require_admin(
    conn: Connection, actor: str, narrative_id: str, why: str, *, what: str = "widen"
) -> None:
    role = conn.execute(sa.select(users.c.role).where(users.c.name == actor)).scalar()
    if role != "admin":
        doing = (
            f"change consent for {narrative_id[:12]} so that it allows more"
            if what == "widen"
            else f"change who gave consent for {narrative_id[:12]} or when"
        )
        raise PermissionDenied(
            f"only an admin can {doing} ({why}); {actor} is "
            f"{'an ' + role if role else 'not a user'}",
            hint="ask an admin (`narrative users add NAME --role admin`), or record consent "
            "that allows no more than before",
        )


def record_withdrawal(ctx: Context, narrative_id: str, *, actor: str, reason: str) -> str:
    """Mark the narrative's consent withdrawn (in its own transaction, so no publish can pass
    the check afterwards); returns the reason, stripped. A second call changes nothing.
    `workflow.takedown.withdraw` then takes down what was published."""
    reason = (reason or "").strip()
    if not reason:
        raise UsageError("give the reason for the withdrawal (it goes in the audit log)")
    now = utcnow()
    with ctx.db.begin() as conn:
        _require_narrative(conn, narrative_id)
        mark_withdrawn(conn, narrative_id, now=now, actor=actor, reason=reason)
    return reason


# ----------------------------------------------------------------------------- checks


def consent_problem(
    consent: Consent | None, channel: str, now: datetime | None = None, *, label: str = ""
) -> str | None:
    """Why `consent` does not allow publishing on `channel`, or None when it does."""
    now = now or utcnow()
    who = f"narrative {label}" if label else "this narrative"
    if consent is None:
        return f"no consent is recorded for {who}"
    if consent.withdrawn_at is not None:
        return f"consent for {who} was withdrawn on {consent.withdrawn_at:%Y-%m-%d %H:%M} UTC"
    if consent.expires_at is not None and consent.expires_at <= now:
        return f"consent for {who} expired on {consent.expires_at:%Y-%m-%d %H:%M} UTC"
    if channel not in consent.channels:
        allowed = ", ".join(consent.channels) or "none"
        return f"consent for {who} does not cover {channel} (only: {allowed})"
    return None


def _hint(problem: str, narrative_id: str) -> str | None:
    if problem.startswith("no consent"):
        return (
            f"record it: narrative consent set {narrative_id[:12]} --by NAME --method form "
            f"--channels {','.join(CHANNELS)}"
        )
    if "does not cover" in problem:
        return "only a new consent from the narrator that names this channel can allow it"
    return None


def check_approvable(
    conn: Connection, narrative_id: str, channel: str, *, now: datetime | None = None
) -> Consent:
    """Raise ConsentError unless the narrative's consent covers `channel` now."""
    consent = load_consent(conn, narrative_id)
    problem = consent_problem(consent, channel, now, label=narrative_id[:12])
    if problem:
        raise ConsentError(problem, hint=_hint(problem, narrative_id))
    assert consent is not None
    return consent


#: The name review's hook uses; the same check.
check = check_approvable


def check_publishable(
    conn: Connection, draft_id: int, channel: str | None = None, *, now: datetime | None = None
) -> Consent:
    """Raise ConsentError unless the draft's narrative has consent for its channel now.

    Called at scheduling and again at publish time (consent may have been withdrawn or have
    expired in between).
    """
    row = conn.execute(
        sa.select(drafts.c.narrative_id, drafts.c.channel).where(drafts.c.id == draft_id)
    ).first()
    if row is None:
        raise NotFound(f"no draft {draft_id}")
    if channel is not None and channel != row.channel:
        raise ConsentError(f"draft {draft_id} is for {row.channel}, not {channel}")
    return check_approvable(conn, row.narrative_id, row.channel, now=now)


def is_anonymous(conn: Connection, narrative_id: str) -> bool:
    """True unless a recorded consent says the narrator may be named (no record: anonymous)."""
    consent = load_consent(conn, narrative_id)
    return consent is None or consent.anonymous
