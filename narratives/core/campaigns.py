"""Campaign definitions: `campaigns/*.toml` in the workspace, validated on load.

A campaign says who runs it, how its videos look, which tags it cares about (its taxonomy),
where it posts (Bluesky account, RSS/Atom feed), when (weekly slots in its own time zone) and
how it treats content notes. Unknown keys and bad values are `ConfigError`s naming file and key.
Secrets never live here: a Bluesky channel names the environment variable holding its app password.

The channel names (`CHANNELS`) live here too, beside the settings that declare them: core is
the one layer every other may read, so the store, policy, the pages and the channels' adapters
all name a channel from this one table.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from narratives.core.config import format_validation_error
from narratives.core.errors import ConfigError, NotFound
from narratives.core.workspace import Workspace

__all__ = [
    "BLUESKY",
    "RSS",
    "CHANNELS",
    "RECORD_CHANNELS",
    "ChannelInfo",
    "Campaign",
    "Tag",
    "Look",
    "Slots",
    "BlueskyChannelConfig",
    "BlueskyGates",
    "BlueskyVideoLimits",
    "REPLY_RULES",
    "check_reply_rules",
    "draft_gates",
    "RSSChannelConfig",
    "load_campaigns",
    "get_campaign",
    "load_campaign_file",
]

# ----------------------------------------------------------------------------- the channels

BLUESKY = "bluesky"
RSS = "rss"


@dataclass(frozen=True)
class ChannelInfo:
    """What the rest of the package needs to know of a channel (its editable draft fields
    live with the draft rules, `records.draft.EDITABLE`)."""

    name: str
    label: str
    #: How the consent form names it, where a narrator chooses what to agree to.
    long_label: str
    #: Whether a published delivery leaves records on the network that a takedown must delete.
    has_records: bool
    #: The video format the channel publishes: a campaign with the channel renders it
    #: (`look.formats` adds others). RSS encloses the draft's video, vertical first.
    video_format: str = "vertical"


CHANNELS: dict[str, ChannelInfo] = {
    BLUESKY: ChannelInfo(BLUESKY, "Bluesky", "Bluesky", has_records=True, video_format="vertical"),
    RSS: ChannelInfo(RSS, "RSS", "RSS/Atom feed", has_records=False, video_format="vertical"),
}
#: The channels whose deliveries leave records (posts with record keys) on the network.
RECORD_CHANNELS = tuple(c.name for c in CHANNELS.values() if c.has_records)


# ----------------------------------------------------------------------------- campaign files

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tag(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    #: A described label separates far better than a bare word (see MODELS.md).
    description: str = Field(min_length=10)
    examples: list[str] = []


class Look(_Model):
    #: One colour, or two for a top-to-bottom gradient.
    background: list[str] = Field(min_length=1, max_length=2)
    text_color: str = "#ffffff"
    accent_color: str = "#ffcc00"
    #: A font file path relative to the workspace, or empty for the shipped Roboto.
    font: str = ""
    #: A logo image path relative to the workspace, or empty.
    logo: str = ""
    background_image: str = ""
    #: Formats rendered IN ADDITION to those the campaign's channels publish
    #: (`ChannelInfo.video_format`: vertical for Bluesky and RSS). Empty by default; an older
    #: workspace's `formats = ["vertical", "square"]` still renders both (explicit wins).
    formats: list[Literal["vertical", "square"]] = []
    #: The videos' short edge in pixels (layouts are written for 1080 and scale); None: the
    #: workspace's `[render] resolution`.
    resolution: int | None = Field(None, ge=240, le=2160)
    #: Frames per second; None: the workspace's `[render] fps`.
    fps: int | None = Field(None, ge=1, le=60)
    #: The line under the title on the title card.
    title_line: str = ""

    @field_validator("background")
    @classmethod
    def _colours(cls, v: list[str]) -> list[str]:
        for c in v:
            if not _HEX.match(c):
                raise ValueError(f"{c!r} is not a #rrggbb colour")
        return v

    @field_validator("text_color", "accent_color")
    @classmethod
    def _colour(cls, v: str) -> str:
        if not _HEX.match(v):
            raise ValueError(f"{v!r} is not a #rrggbb colour")
        return v


class Slots(_Model):
    timezone: str
    #: Weekly wall-clock times in the campaign's zone, e.g. "mon 09:00".
    weekly: list[str] = []
    #: A delivery this late when the scheduler wakes is marked missed, not posted.
    missed_after_hours: float = Field(12.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_slot(item)
        return v

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def parsed(self) -> list[tuple[int, time]]:
        """(weekday 0=Monday, wall-clock time) pairs, sorted."""
        return sorted(parse_slot(s) for s in self.weekly)


def parse_slot(text: str) -> tuple[int, time]:
    m = re.fullmatch(r"\s*([a-z]{3})\s+(\d{1,2}):(\d{2})\s*", text.lower())
    if not m or m.group(1) not in _WEEKDAYS:
        raise ValueError(f"slot {text!r} is not like 'mon 09:00'")
    hour, minute = int(m.group(2)), int(m.group(3))
    if hour > 23 or minute > 59:
        raise ValueError(f"slot {text!r} has an impossible time")
    return _WEEKDAYS.index(m.group(1)), time(hour, minute)


#: Who may reply to a post (app.bsky.feed.threadgate): "everyone" (no gate) or "nobody" alone,
#: else any of the rest ("lists": members of the lists named in `lists`).
REPLY_RULES = ("everyone", "nobody", "followers", "following", "mentioned", "lists")
_LIST_URI = re.compile(
    r"^at://did:[a-z]+:[A-Za-z0-9._:%-]+/app\.bsky\.graph\.list/[A-Za-z0-9._:~-]+$"
)


def _check_replies(replies: list[str]) -> None:
    unknown = [r for r in replies if r not in REPLY_RULES]
    if unknown:
        raise ValueError(
            f"unknown reply rule {unknown[0]!r}; use {', '.join(repr(r) for r in REPLY_RULES)}"
        )
    if not replies:
        raise ValueError('name at least one rule ("everyone" for no limit, "nobody" for none)')
    alone = [r for r in ("everyone", "nobody") if r in replies]
    if alone and len(set(replies)) > 1:
        raise ValueError(f"{alone[0]!r} cannot be combined with other reply rules")


def _check_lists(lists: list[str]) -> None:
    for uri in lists:
        if not _LIST_URI.match(uri):
            raise ValueError(
                f"{uri!r} is not a list's AT URI (at://did:.../app.bsky.graph.list/RKEY)"
            )


def check_reply_rules(replies: list[str], lists: list[str]) -> None:
    """Raise ValueError unless `replies` and `lists` make one threadgate (see `REPLY_RULES`)."""
    _check_replies(replies)
    _check_lists(lists)
    if "lists" in replies and not lists:
        raise ValueError('reply rule "lists" needs the lists\' AT URIs in `lists`')
    if lists and "lists" not in replies:
        raise ValueError('`lists` is set but the reply rules do not include "lists"')


class BlueskyGates(_Model):
    """Who may reply to a campaign's posts, and whether they may be quoted (written as
    `app.bsky.feed.threadgate` and `app.bsky.feed.postgate` records beside each post)."""

    replies: list[str] = ["everyone"]
    #: AT URIs of lists (app.bsky.graph.list) whose members may reply, with "lists".
    lists: list[str] = []
    quotes: bool = True

    @field_validator("replies")
    @classmethod
    def _replies(cls, v: list[str]) -> list[str]:
        _check_replies(v)
        return v

    @field_validator("lists")
    @classmethod
    def _lists(cls, v: list[str]) -> list[str]:
        _check_lists(v)
        return v

    @model_validator(mode="after")
    def _rules(self) -> BlueskyGates:
        check_reply_rules(self.replies, self.lists)
        return self


def draft_gates(value: object) -> dict[str, object] | None:
    """A draft's own reply and quote controls (`content["gates"]`), checked: None (or an empty
    value) means the campaign's. Raises ValueError naming what is wrong."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise ValueError("gates must be a table of replies, lists and quotes")
    try:
        gates = BlueskyGates.model_validate(value)
    except ValidationError as exc:
        messages = (e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ValueError("; ".join(messages)) from None
    return gates.model_dump()


class BlueskyVideoLimits(_Model):
    """Video limits (app.bsky.embed.video and the video service's lexicons); lower them for a
    campaign, never raise them above Bluesky's."""

    max_bytes: int = Field(100_000_000, gt=0, le=100_000_000)
    max_seconds: float = Field(180, gt=0, le=180)
    max_captions: int = Field(20, ge=0, le=20)
    max_caption_bytes: int = Field(20_000, gt=0, le=20_000)


class BlueskyChannelConfig(_Model):
    handle: str
    service: str = "https://bsky.social"
    #: The environment variable that holds the app password (never the password itself).
    password_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    template: str = "posts/bluesky.j2"
    langs: list[str] = []
    #: Reply and quote controls for every post of the campaign (a draft may override them).
    gates: BlueskyGates = BlueskyGates()
    #: "service": upload videos through Bluesky's video service (app.bsky.video), as accounts
    #: hosted by Bluesky should; "direct": as a blob to the account's own server.
    video_upload: Literal["service", "direct"] = "direct"
    #: The video service's address (its DID is did:web of its host).
    video_service: str = "https://video.bsky.app"
    video_limits: BlueskyVideoLimits = BlueskyVideoLimits()


class RSSChannelConfig(_Model):
    title: str
    link: str
    description: str
    author: str
    image: str = ""
    language: str = "en"
    template: str = "posts/rss.j2"


class Channels(_Model):
    """A campaign's settings per channel: one field for each name in `CHANNELS`."""

    bluesky: BlueskyChannelConfig | None = None
    rss: RSSChannelConfig | None = None


class ContentNotePolicy(_Model):
    #: Notes with a score above this are shown to editors and warned about in posts.
    threshold: float = Field(0.35, ge=0, le=1)
    #: Note name -> Bluesky self-label value (e.g. "graphic-media").
    labels: dict[str, str] = {}
    #: Notes that always put a content warning at the top of the post.
    warn: list[str] = []


class Campaign(_Model):
    slug: str
    name: str
    owner: str
    description: str
    link: str
    language: str = "en"
    hashtags: list[str] = []
    #: A tag applies when its learnt probability reaches this (see
    #: narratives.stages.analyse.tagging); a story
    #: none of whose tags applies fits the campaign only if someone assigns it. The shipped
    #: campaigns write theirs, calibrated on stories that trained nothing
    #: (scripts/calibrate_tag_thresholds.py: 0.35 for both); a campaign that writes none starts
    #: where a probability says "as likely as not".
    tag_threshold: float = Field(0.5, ge=0, le=1)
    #: For tags with too few example stories to learn from: the description similarity that
    #: makes them apply.
    description_threshold: float = Field(0.45, ge=0, le=1)
    max_video_seconds: float = Field(180, gt=0, le=180)
    #: What the campaign requires posts and feed items to say about AI assistance.
    ai_disclosure: str = ""
    #: How an anonymous narrator is heard in published videos: "disguised" (the recording,
    #: names bleeped, pitch shifted if an editor asks) or "synthetic" (a shipped neural voice
    #: speaks the redacted words; see narratives/policy/voice.py).
    voice: Literal["disguised", "synthetic"] = "disguised"
    look: Look
    tags: list[Tag] = Field(min_length=1)
    slots: Slots
    channels: Channels
    content_notes: ContentNotePolicy = ContentNotePolicy()

    #: The file this campaign came from (not part of the TOML).
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError("slug must be lowercase letters, digits and dashes")
        return v

    @field_validator("hashtags")
    @classmethod
    def _hashtags(cls, v: list[str]) -> list[str]:
        for h in v:
            if not re.fullmatch(r"\w+", h):
                raise ValueError(f"hashtag {h!r}: letters and digits only, without '#'")
        return v

    @property
    def channel_names(self) -> list[str]:
        return [n for n in CHANNELS if getattr(self.channels, n) is not None]

    def tag(self, name: str) -> Tag:
        for t in self.tags:
            if t.name == name:
                return t
        raise NotFound(
            f"campaign {self.slug} has no tag {name!r}",
            hint="its tags: " + ", ".join(t.name for t in self.tags),
        )


def load_campaign_file(path: Path) -> Campaign:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read campaign: {exc}") from exc
    if "path" in data:
        raise ConfigError(f"{path}: invalid campaign\n  path: Extra inputs are not permitted")
    try:
        campaign = Campaign.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from exc
    if campaign.slug != path.stem:
        raise ConfigError(f"{path}: slug {campaign.slug!r} must match the file name {path.stem!r}")
    return campaign


def load_campaigns(workspace: Workspace) -> list[Campaign]:
    """Every campaign of the workspace, sorted by slug."""
    if not workspace.campaigns_dir.is_dir():
        return []
    return [load_campaign_file(p) for p in sorted(workspace.campaigns_dir.glob("*.toml"))]


def get_campaign(workspace: Workspace, slug: str) -> Campaign:
    for c in load_campaigns(workspace):
        if c.slug == slug:
            return c
    raise NotFound(f"no campaign {slug!r}", hint="see `narrative campaigns list`")
