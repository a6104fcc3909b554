"""The consent ledger: what each narrator agreed to, checked wherever something goes public.

One `consents` row per narrative: who gave consent, when, how (form, recording, in person),
for which channels, whether the narrator must stay anonymous (the default: the safe choice),
and until when. Review approval, scheduling and publishing ask `check_approvable` /
`check_publishable`; both raise `ConsentError` with the reason. Every change writes an audit
row in the same transaction.

Design choices that are not obvious:

- **Withdrawal is a takedown, not a flag.** `withdraw` marks the consent withdrawn first (in its
  own transaction, so no publish can pass the check afterwards), cancels the deliveries still
  waiting, then deletes every post of every published Bluesky thread by its record key and
  rebuilds the campaign feeds without the narrative's items. Network work happens outside any
  transaction. A delivery that is or may be out is first marked `withdrawing` in its own
  transaction, *before* any lookup or delete: a publisher still posting it then fails its next
  conditional write, stops, and takes down what it posted itself. It becomes `withdrawn` only
  once its posts are gone and no live publisher still holds it, so a takedown interrupted by a
  server outage (or racing a publish) is finished by the next `withdraw` or `expire_due`.
- **Expiry does the same, lazily.** `expire_due` finds narratives whose consent no longer
  allows publishing (expired, or withdrawn with a takedown left unfinished) that still have
  live deliveries, and takes those down. No extra state: "live deliveries remain" is the state.
- **Narrowing consent takes down what it no longer covers.** A new consent that drops a channel
  cancels or takes down that channel's deliveries; one that asks for anonymity where the
  narrator was named takes down all of them (their videos carry the voice and the names, which
  no text check can see). `expire_due` catches what such a takedown left unfinished.
- **A feed item is gone before its delivery is `withdrawn`.** An RSS delivery stays
  `withdrawing` until its campaign's feeds are rebuilt without it; if the rebuild fails for any
  reason it stays so, and the next `withdraw` or `expire_due` tries again.
- **A sidecar cannot resurrect consent.** Once withdrawn, a consent can only be replaced by
  one given after the withdrawal, so re-processing a folder whose `story.consent.toml` still
  says yes changes nothing. Importing on ingest never overwrites a recorded consent.
- **Dates.** A bare date (`expires_at = 2027-01-01`) means the start of that day in UTC, the
  earlier reading; a naive time is read as UTC.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Connection

from narratives.core.errors import (
    ConfigError,
    ConsentError,
    NarrativesError,
    NotFound,
    PermissionDenied,
    UsageError,
)
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.schema import consents, deliveries, drafts, narratives, utcnow

__all__ = [
    "METHODS",
    "CHANNELS",
    "SIDECAR_SUFFIX",
    "Consent",
    "ConsentInput",
    "TakenDown",
    "WithdrawalReport",
    "get_consent",
    "load_consent",
    "set_consent",
    "sidecar_path",
    "load_sidecar",
    "sidecar_campaigns",
    "import_sidecar",
    "consent_problem",
    "check_approvable",
    "check_publishable",
    "check",
    "is_anonymous",
    "withdraw",
    "take_down",
    "take_down_delivery",
    "take_down_uncovered",
    "expire_due",
]

log = logging.getLogger(__name__)

METHODS = ("form", "recording", "in_person")
CHANNELS = ("bluesky", "rss")
#: `story.m4a` has its consent in `story.consent.toml` beside it.
SIDECAR_SUFFIX = ".consent.toml"
#: Delivery states with something to take down or stop.
_WAITING = ("scheduled", "failed")
_LIVE = ("scheduled", "failed", "publishing", "published", "withdrawing")
#: States from which a delivery that is (or may be) on the server is taken down.
_OUT = ("publishing", "published", "withdrawing")


def _live_clause() -> Any:
    """Deliveries with something to stop or take down; cancelled Bluesky deliveries that were
    attempted count too, since a post may have landed without being recorded."""
    from narratives.store.deliveries import was_attempted

    return sa.or_(
        deliveries.c.state.in_(_LIVE),
        sa.and_(
            deliveries.c.state == "cancelled",
            deliveries.c.channel == "bluesky",
            was_attempted(),
        ),
    )


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
    channels: list[Literal["bluesky", "rss"]] = Field(min_length=1)
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
    def _unique(cls, v: list[str]) -> list[str]:
        return [c for c in CHANNELS if c in v]

    @field_validator("given_at", "expires_at")
    @classmethod
    def _utc(cls, v: datetime | date | None) -> datetime | None:
        return _as_utc(v)

    def given_at_utc(self, now: datetime) -> datetime:
        return self.given_at if isinstance(self.given_at, datetime) else now


@dataclass(frozen=True)
class Consent:
    """A narrative's consent as recorded (see `ConsentInput` for the fields' meaning)."""

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
    #: Set by `set_consent` when the new consent covered less and posts were cancelled or
    #: taken down (not stored: the takedown has its own audit rows).
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


def _audit_view(c: Consent | None) -> dict[str, Any] | None:
    if c is None:
        return None
    d = c.to_dict()
    d.pop("narrative_id", None)
    d.pop("updated_at", None)
    d.pop("status", None)
    return d


# ----------------------------------------------------------------------------- ledger


def load_consent(conn: Connection, narrative_id: str) -> Consent | None:
    row = conn.execute(sa.select(consents).where(consents.c.narrative_id == narrative_id)).first()
    return Consent.from_row(row) if row else None


def get_consent(ctx: Context, narrative_id: str) -> Consent | None:
    """The narrative's consent, or None when none is recorded."""
    with ctx.db.connect() as conn:
        return load_consent(conn, narrative_id)


def _require_narrative(conn: Connection, narrative_id: str) -> None:
    found = conn.execute(sa.select(narratives.c.id).where(narratives.c.id == narrative_id)).first()
    if found is None:
        raise NotFound(f"no narrative {narrative_id[:12]}", hint="see `narrative status`")


def _validate(fields: dict[str, Any], where: str) -> ConsentInput:
    try:
        return ConsentInput.model_validate(fields)
    except ValidationError as exc:
        lines = [f"{where}: invalid consent"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(file)"
            lines.append(f"  {key}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def _save(
    conn: Connection,
    narrative_id: str,
    given: ConsentInput,
    *,
    actor: str,
    action: str,
    detail: str | None = None,
) -> Consent:
    now = utcnow()
    _require_narrative(conn, narrative_id)
    before = load_consent(conn, narrative_id)
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
    values = {
        "given_by": given.given_by,
        "given_at": given_at,
        "method": given.method,
        "channels": list(given.channels),
        "anonymous": given.anonymous,
        "expires_at": given.expires_at,
        "withdrawn_at": None,
        "notes": given.notes,
        "updated_at": now,
    }
    if before is None:
        conn.execute(consents.insert().values(narrative_id=narrative_id, **values))
    else:
        conn.execute(
            consents.update().where(consents.c.narrative_id == narrative_id).values(**values)
        )
    after = load_consent(conn, narrative_id)
    assert after is not None
    audit.record(
        conn,
        actor=actor,
        action=action,
        object_type="consent",
        object_id=narrative_id,
        before=_audit_view(before),
        after=_audit_view(after),
        detail=detail,
    )
    return after


def set_consent(
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
) -> Consent:
    """Record (or replace) a narrative's consent; raises ConfigError for invalid values."""
    given = _validate(
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
        widened = _widens(before, given)
        if widened:
            _require_admin(conn, actor, narrative_id, widened)
        after = _save(conn, narrative_id, given, actor=actor, action="consent.set")
    report = take_down_uncovered(ctx, narrative_id, before, after, actor=actor)
    return dataclasses.replace(after, takedown=report) if report else after


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


def _require_admin(conn: Connection, actor: str, narrative_id: str, why: str) -> None:
    from narratives.store.schema import users

    role = conn.execute(sa.select(users.c.role).where(users.c.name == actor)).scalar()
    if role != "admin":
        raise PermissionDenied(
            f"only an admin can change consent for {narrative_id[:12]} so that it allows "
            f"more ({why}); {actor} is {'an ' + role if role else 'not a user'}",
            hint="ask an admin (`narrative users add NAME --role admin`), or record consent "
            "that allows no more than before",
        )


# ----------------------------------------------------------------------------- sidecar files


def sidecar_path(recording: Path) -> Path:
    """`story.m4a` → `story.consent.toml`, beside it."""
    recording = Path(recording)
    if recording.name.endswith(SIDECAR_SUFFIX):
        return recording
    return recording.with_name(recording.stem + SIDECAR_SUFFIX)


#: A sidecar key that is not about consent: the campaigns the recording is for, handed to
#: `narratives.workflow.assignments` by the pipeline (see `sidecar_campaigns`).
SIDECAR_CAMPAIGNS_KEY = "campaigns"


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    path = sidecar_path(Path(path))
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read consent: {exc}") from None


def load_sidecar(path: Path) -> ConsentInput | None:
    """Read a consent sidecar (`story.consent.toml`, or the one beside `story.m4a`).

    None when there is no such file, or when it only names campaigns (no consent in it);
    ConfigError naming the file and key when it is invalid. The `campaigns` key is not
    consent: `sidecar_campaigns` reads it.
    """
    path = sidecar_path(Path(path))
    data = _read_sidecar(path)
    if data is None:
        return None
    data = {k: v for k, v in data.items() if k != SIDECAR_CAMPAIGNS_KEY}
    if not data:
        return None
    return _validate(data, str(path))


def sidecar_campaigns(path: Path) -> list[str]:
    """The campaign slugs a sidecar names (`campaigns = ["slug", ...]`), in order, or [].

    Only the form is checked here (a list of strings); whether the slugs exist is for the
    caller (`narratives.workflow.assignments.check_slugs`). ConfigError naming the file and key."""
    path = sidecar_path(Path(path))
    data = _read_sidecar(path)
    if not data or SIDECAR_CAMPAIGNS_KEY not in data:
        return []
    value = data[SIDECAR_CAMPAIGNS_KEY]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(
            f"{path}: invalid sidecar\n  {SIDECAR_CAMPAIGNS_KEY}: must be a list of campaign "
            'slugs, like campaigns = ["emotional-equity"]'
        )
    return list(dict.fromkeys(v.strip() for v in value))


def import_sidecar(
    ctx: Context,
    narrative_id: str,
    recording_path: Path,
    actor: str = "import",
    *,
    replace: bool = False,
) -> Consent | None:
    """Record the consent in the recording's sidecar; returns the consent now in force.

    Returns None when there is no sidecar and no consent recorded. Without `replace`, an
    already recorded consent is kept as it is (re-processing a folder never changes consent);
    with it, the sidecar replaces it (still refused if the old one was withdrawn later).
    """
    path = sidecar_path(Path(recording_path))
    given = load_sidecar(path)
    with ctx.db.begin() as conn:
        current = load_consent(conn, narrative_id)
        if given is None:
            return current
        if current is not None and not replace:
            if _same(current, given):
                return current
            log.warning(
                "%s: consent already recorded for %s differs; kept (use `narrative consent "
                "import` to replace it)",
                path,
                narrative_id[:12],
            )
            return current
        after = _save(
            conn, narrative_id, given, actor=actor, action="consent.import", detail=str(path)
        )
    take_down_uncovered(ctx, narrative_id, current, after, actor=actor)
    return after


def _same(c: Consent, given: ConsentInput) -> bool:
    return (
        c.given_by == given.given_by
        and c.method == given.method
        and tuple(c.channels) == tuple(given.channels)
        and c.anonymous == given.anonymous
        and c.expires_at == given.expires_at
        and (c.notes or None) == (given.notes or None)
        and (given.given_at is None or c.given_at == given.given_at)
    )


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
            "--channels bluesky,rss"
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


# ----------------------------------------------------------------------------- takedown


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
        return [t.delivery_id for t in self.deliveries if t.after == "cancelled"]

    @property
    def withdrawn(self) -> list[int]:
        return [t.delivery_id for t in self.deliveries if t.after == "withdrawn"]

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
            "deleted_posts": self.deleted_posts,
            "feeds_rebuilt": self.feeds_rebuilt,
            "errors": self.errors,
            "complete": self.complete,
        }


def withdraw(ctx: Context, narrative_id: str, *, actor: str, reason: str) -> WithdrawalReport:
    """The narrator withdraws consent: stop and take down everything of the narrative.

    Safe to run again: a second run finishes a takedown the first could not (server down).
    """
    reason = (reason or "").strip()
    if not reason:
        raise UsageError("give the reason for the withdrawal (it goes in the audit log)")
    now = utcnow()
    with ctx.db.begin() as conn:
        _require_narrative(conn, narrative_id)
        before = load_consent(conn, narrative_id)
        if before is None:
            # Nothing was agreed, but the narrator's wish is still recorded and enforced.
            conn.execute(
                consents.insert().values(
                    narrative_id=narrative_id,
                    given_by="(none recorded)",
                    given_at=now,
                    method="in_person",
                    channels=[],
                    anonymous=True,
                    withdrawn_at=now,
                    notes=None,
                    updated_at=now,
                )
            )
        elif before.withdrawn_at is None:
            conn.execute(
                consents.update()
                .where(consents.c.narrative_id == narrative_id)
                .values(withdrawn_at=now, updated_at=now)
            )
        after = load_consent(conn, narrative_id)
        if before is None or before.withdrawn_at is None:
            audit.record(
                conn,
                actor=actor,
                action="consent.withdraw",
                object_type="consent",
                object_id=narrative_id,
                before=_audit_view(before),
                after=_audit_view(after),
                detail=reason,
            )
    return take_down(ctx, narrative_id, actor=actor, reason=reason, action="withdraw")


def _bluesky_channel(ctx: Context, campaign_slug: str) -> Any:
    from narratives.channels.bluesky import BlueskyAccount, BlueskyChannel
    from narratives.core.campaigns import get_campaign

    campaign = get_campaign(ctx.workspace, campaign_slug)
    cfg = campaign.channels.bluesky
    if cfg is None:
        raise NarrativesError(
            f"campaign {campaign_slug} has no Bluesky account configured any more, so its "
            "posts cannot be deleted from here",
            hint="restore its [channels.bluesky] section, then run the withdrawal again",
        )
    account = BlueskyAccount(
        handle=cfg.handle, service_url=cfg.service, password_env=cfg.password_env
    )
    return BlueskyChannel(account, ctx.workspace)


def _delete_posts(channel: Any, posts: Iterable[dict[str, Any]]) -> list[str]:
    """Delete every post of a thread that may be on the server; returns the URIs deleted.

    Posts without a stored URI may still have landed (a publish interrupted after the server
    committed), so their record keys are looked up too.
    """
    from narratives.channels.bluesky import PublishedRef

    refs: list[PublishedRef] = []
    for p in posts or ():
        if p.get("uri"):
            refs.append(PublishedRef(uri=p["uri"], cid=p.get("cid") or "", rkey=p["rkey"]))
        elif p.get("rkey"):
            found = channel.lookup(p["rkey"])
            if found is not None:
                refs.append(found)
    if refs:
        channel.delete(refs)
    return [r.uri for r in refs]


def _may_have_landed(row: Any) -> bool:
    """A Bluesky delivery that was attempted, or has posts recorded, may have posts out."""
    if row.channel != "bluesky":
        return False
    return bool(row.ever_attempted) or any(p.get("uri") for p in row.posts or ())


def _needs_takedown(row: Any) -> bool:
    if row.state in _OUT:
        return True
    if row.state == "withdrawn":
        # Look again: a publisher may have landed a post after the first takedown's lookups.
        return row.channel == "bluesky"
    return row.state in (*_WAITING, "cancelled") and _may_have_landed(row)


def _load_row(conn: Connection, delivery_id: int) -> Any:
    from narratives.store.deliveries import was_attempted

    row = conn.execute(
        sa.select(deliveries, was_attempted().label("ever_attempted")).where(
            deliveries.c.id == delivery_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    return row


def _cancel_waiting(conn: Connection, row: Any, *, actor: str, reason: str) -> bool:
    """Cancel a delivery that never went out; False if its state changed meanwhile."""
    res = conn.execute(
        deliveries.update()
        .where(deliveries.c.id == row.id, deliveries.c.state.in_(_WAITING))
        .values(state="cancelled", retry_at=None, updated_at=utcnow())
    )
    if res.rowcount != 1:
        return False
    audit.record(
        conn,
        actor=actor,
        action="cancel",
        object_type="delivery",
        object_id=row.id,
        before={"state": row.state},
        after={"state": "cancelled"},
        detail=f"consent: {reason}",
    )
    return True


def _start_withdrawing(ctx: Context, delivery_id: int, *, actor: str, reason: str) -> Any:
    """Cancel the delivery if it never went out, else mark it `withdrawing` in a transaction
    of its own, before any lookup or delete (see the module docstring). Returns the row as it
    is now; its state says which happened."""
    with ctx.db.begin() as conn:
        for _ in range(5):
            row = _load_row(conn, delivery_id)
            if row.state in _WAITING and not _may_have_landed(row):
                if _cancel_waiting(conn, row, actor=actor, reason=reason):
                    return _load_row(conn, delivery_id)
                continue
            if not _needs_takedown(row):
                return row
            res = conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id, deliveries.c.state == row.state)
                .values(state="withdrawing", retry_at=None, updated_at=utcnow())
            )
            if res.rowcount == 1:
                return _load_row(conn, delivery_id)
        raise NarrativesError(f"delivery {delivery_id} keeps changing state; try again")


def _finish_withdrawing(
    ctx: Context,
    info: TakenDown,
    posts: list[dict[str, Any]],
    *,
    owner: str | None,
    actor: str,
    reason: str,
) -> None:
    """`withdrawing` → `withdrawn`, unless a live publisher other than `owner` still holds
    the delivery: it may land a post after our lookups, so it is left `withdrawing` (still
    live) for that publisher, or a later `expire_due`, to finish."""
    from narratives.store.deliveries import claim_is_stale

    with ctx.db.begin() as conn:
        row = _load_row(conn, info.delivery_id)
        if row.state != "withdrawing":
            info.after = row.state  # finished by another takedown meanwhile
            return
        held = row.claimed_by is not None and row.claimed_by != owner
        if held and info.channel == "bluesky":
            if not claim_is_stale(row.claimed_by, row.claimed_at, utcnow()):
                info.after = "withdrawing"
                return
        claimed = (
            deliveries.c.claimed_by.is_(None)
            if row.claimed_by is None
            else deliveries.c.claimed_by == row.claimed_by
        )
        res = conn.execute(
            deliveries.update()
            .where(
                deliveries.c.id == info.delivery_id, deliveries.c.state == "withdrawing", claimed
            )
            .values(
                state="withdrawn",
                retry_at=None,
                updated_at=utcnow(),
                claimed_by=None,
                claimed_at=None,
            )
        )
        if res.rowcount != 1:
            info.after = _load_row(conn, info.delivery_id).state
            return
        if info.before != "withdrawn" or info.deleted:
            audit.record(
                conn,
                actor=actor,
                action="withdraw",
                object_type="delivery",
                object_id=info.delivery_id,
                before={"state": info.before, "posts": posts or None},
                after={"state": "withdrawn", "deleted": info.deleted},
                detail=f"consent: {reason}",
            )
    info.after = "withdrawn"


def take_down_delivery(
    ctx: Context,
    delivery_id: int,
    *,
    actor: str,
    reason: str,
    channels: dict[str, Any] | None = None,
    owner: str | None = None,
    finish_rss: bool = True,
) -> TakenDown:
    """Stop or take down one delivery: cancel it if it never went out; otherwise mark it
    `withdrawing`, delete every post it may have on Bluesky (stored URIs, and a lookup of
    every other record key), then mark it `withdrawn`. The feed is not rebuilt here: with
    `finish_rss=False` an RSS delivery is left `withdrawing` for the caller to finish once
    the feed no longer lists it (`take_down`).

    A publisher that finds, after posting, that its delivery was withdrawn meanwhile calls this
    with its claim as `owner` (its conditional update matched no row).
    """
    with ctx.db.connect() as conn:
        first = _load_row(conn, delivery_id)
    row = _start_withdrawing(ctx, delivery_id, actor=actor, reason=reason)
    info = TakenDown(row.id, row.draft_id, row.campaign, row.channel, first.state, row.state)
    if row.state != "withdrawing" or (info.channel == "rss" and not finish_rss):
        return info
    posts = list(row.posts or [])

    deleted: list[str] = []
    if info.channel == "bluesky" and posts:
        owned = channels is None
        channels = {} if channels is None else channels
        try:
            channel = channels.get(info.campaign)
            if channel is None:
                channel = channels[info.campaign] = _bluesky_channel(ctx, info.campaign)
            deleted = _delete_posts(channel, posts)
        except NarrativesError as exc:
            info.after, info.error = "withdrawing", str(exc)
            return info
        finally:
            if owned:
                for ch in channels.values():
                    ch.close()
    info.deleted = deleted
    _finish_withdrawing(ctx, info, posts, owner=owner, actor=actor, reason=reason)
    return info


def take_down(
    ctx: Context,
    narrative_id: str,
    *,
    actor: str,
    reason: str,
    action: str = "withdraw",
    only: Collection[int] | None = None,
) -> WithdrawalReport:
    """Cancel, delete and unlist every delivery of the narrative's drafts (or only those in
    `only`); rebuild feeds.

    Always ends with its audit record, whatever failed: a failure is reported in `errors`, and
    what it left undone stays live (`withdrawing`) for a later run to finish.
    """
    report = WithdrawalReport(narrative_id, reason, utcnow(), action)
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.id, deliveries.c.state, deliveries.c.channel)
            .join(drafts, drafts.c.id == deliveries.c.draft_id)
            .where(drafts.c.narrative_id == narrative_id, _live_clause())
            .order_by(deliveries.c.id)
        ).all()
    if only is not None:
        rows = [r for r in rows if r.id in only]
    channels: dict[str, Any] = {}
    unlist: dict[str, list[TakenDown]] = {}
    try:
        for r in rows:
            try:
                taken = take_down_delivery(
                    ctx, r.id, actor=actor, reason=reason, channels=channels, finish_rss=False
                )
            except Exception as exc:  # reported; the delivery stays live for a later run
                if not isinstance(exc, NarrativesError):
                    log.exception("taking down delivery %s failed", r.id)
                report.errors.append(f"delivery {r.id}: {exc}")
                continue
            report.deliveries.append(taken)
            if taken.error:
                report.errors.append(f"delivery {r.id} ({taken.channel}): {taken.error}")
            elif taken.channel == "rss" and taken.after == "withdrawing":
                unlist.setdefault(taken.campaign, []).append(taken)
    finally:
        for ch in channels.values():
            ch.close()
    for slug, items in sorted(unlist.items()):
        if not _unlist(ctx, slug, items, actor=actor, reason=reason, report=report):
            continue
        report.feeds_rebuilt.append(slug)
    if rows or report.errors:
        with ctx.db.begin() as conn:
            audit.record(
                conn,
                actor=actor,
                action=f"consent.{action}.takedown",
                object_type="consent",
                object_id=narrative_id,
                after={
                    "cancelled": report.cancelled,
                    "withdrawn": report.withdrawn,
                    "deleted_posts": report.deleted_posts,
                    "feeds_rebuilt": report.feeds_rebuilt,
                    "errors": report.errors,
                },
                detail=reason,
            )
    return report


def _unlist(
    ctx: Context,
    slug: str,
    items: list[TakenDown],
    *,
    actor: str,
    reason: str,
    report: WithdrawalReport,
) -> bool:
    """Rebuild the campaign's feeds without `items` (already `withdrawing`, which no feed
    lists), then mark them `withdrawn`. On any failure they stay `withdrawing`: the old feed
    file may still list them, so the takedown is not done until a rebuild succeeds."""
    from narratives.channels.rss.feeds import write_campaign_feeds

    try:
        write_campaign_feeds(ctx, slug)
        for info in items:
            _finish_withdrawing(ctx, info, [], owner=None, actor=actor, reason=reason)
    except Exception as exc:  # any failure leaves the items to a later run
        if not isinstance(exc, NarrativesError):
            log.exception("rebuilding the feeds of %s after a takedown failed", slug)
        for info in items:
            if info.after == "withdrawing":
                info.error = f"feeds of {slug} not rebuilt: {exc}"
        report.errors.append(f"feeds of {slug}: {exc}")
        return False
    return True


def _uncovered(
    conn: Connection, narrative_id: str, consent: Consent, *, newly_anonymous: bool
) -> list[int]:
    """The narrative's live deliveries that `consent` does not cover: on a channel it does not
    name (or all of them, when it no longer allows publishing, or when the narrator must now
    stay anonymous), and any takedown left unfinished (`withdrawing`)."""
    rows = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.channel, deliveries.c.state)
        .join(drafts, drafts.c.id == deliveries.c.draft_id)
        .where(drafts.c.narrative_id == narrative_id, _live_clause())
        .order_by(deliveries.c.id)
    ).all()
    return [
        r.id
        for r in rows
        if newly_anonymous
        or r.state == "withdrawing"
        or consent_problem(consent, r.channel) is not None
    ]


def take_down_uncovered(
    ctx: Context, narrative_id: str, before: Consent | None, after: Consent, *, actor: str
) -> WithdrawalReport | None:
    """After a consent is replaced: cancel or take down what the new one no longer covers.

    Dropping a channel affects that channel's deliveries. Asking for anonymity where the
    narrator was named affects all of them: their videos carry the undisguised voice and
    names that no text check can see. None when nothing was affected; a takedown left
    unfinished (server down) is logged and finished by `expire_due`.
    """
    newly_anonymous = before is not None and not before.anonymous and after.anonymous
    with ctx.db.connect() as conn:
        ids = _uncovered(conn, narrative_id, after, newly_anonymous=newly_anonymous)
    if not ids:
        return None
    if newly_anonymous:
        reason = "new consent: the narrator must now stay anonymous"
    else:
        allowed = ", ".join(after.channels) or "none"
        reason = f"new consent covers less (only: {allowed})"
    report = take_down(ctx, narrative_id, actor=actor, reason=reason, action="narrow", only=ids)
    if report.errors:
        log.warning(
            "narrative %s: takedown after the consent change is unfinished (retried by the "
            "scheduler): %s",
            narrative_id[:12],
            "; ".join(report.errors),
        )
    return report


def expire_due(
    ctx: Context, now: datetime | None = None, *, actor: str = "scheduler"
) -> list[WithdrawalReport]:
    """Take down narratives whose consent no longer allows publishing but that still have
    live deliveries: expired consents, and withdrawals whose takedown was left unfinished.
    Under a consent still in force, take down the deliveries on channels it does not name
    (a narrowed consent whose takedown did not finish) and any other unfinished takedown.

    Cheap when there is nothing to do (two queries); the scheduler runs it periodically.
    """
    now = now or utcnow()
    in_force = sa.and_(
        consents.c.withdrawn_at.is_(None),
        sa.or_(consents.c.expires_at.is_(None), consents.c.expires_at > now),
    )
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(consents.c.narrative_id, consents.c.withdrawn_at, consents.c.expires_at)
            .where(
                sa.not_(in_force),
                sa.exists(
                    sa.select(deliveries.c.id)
                    .join(drafts, drafts.c.id == deliveries.c.draft_id)
                    .where(
                        drafts.c.narrative_id == consents.c.narrative_id,
                        _live_clause(),
                    )
                ),
            )
            .order_by(consents.c.narrative_id)
        ).all()
        # JSON membership is not portable SQL, so the channels are compared here.
        live = conn.execute(
            sa.select(
                consents.c.narrative_id,
                consents.c.channels,
                deliveries.c.id,
                deliveries.c.channel,
                deliveries.c.state,
            )
            .join(drafts, drafts.c.narrative_id == consents.c.narrative_id)
            .join(deliveries, deliveries.c.draft_id == drafts.c.id)
            .where(in_force, _live_clause())
            .order_by(consents.c.narrative_id, deliveries.c.id)
        ).all()
    narrowed: dict[str, list[int]] = {}
    for d in live:
        if d.state == "withdrawing" or d.channel not in (d.channels or ()):
            narrowed.setdefault(d.narrative_id, []).append(d.id)
    reports = []
    for r in rows:
        if r.withdrawn_at is not None:
            action, reason = "withdraw", "finishing an interrupted withdrawal"
        else:
            action, reason = "expire", f"consent expired on {r.expires_at:%Y-%m-%d %H:%M} UTC"
        reports.append(take_down(ctx, r.narrative_id, actor=actor, reason=reason, action=action))
    for narrative_id, ids in narrowed.items():
        reason = "finishing the takedown of what the consent no longer covers"
        reports.append(
            take_down(ctx, narrative_id, actor=actor, reason=reason, action="narrow", only=ids)
        )
    return reports
