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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


CHANNELS: dict[str, ChannelInfo] = {
    BLUESKY: ChannelInfo(BLUESKY, "Bluesky", "Bluesky", has_records=True),
    RSS: ChannelInfo(RSS, "RSS", "RSS/Atom feed", has_records=False),
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
    formats: list[Literal["vertical", "square"]] = ["vertical"]
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


class BlueskyChannelConfig(_Model):
    handle: str
    service: str = "https://bsky.social"
    #: The environment variable that holds the app password (never the password itself).
    password_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    template: str = "posts/bluesky.j2"
    langs: list[str] = []


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
    #: none of whose tags applies fits the campaign only if someone assigns it.
    tag_threshold: float = Field(0.5, ge=0, le=1)
    #: For tags with too few example stories to learn from: the description similarity that
    #: makes them apply.
    description_threshold: float = Field(0.45, ge=0, le=1)
    max_video_seconds: float = Field(180, gt=0, le=180)
    #: What the campaign requires posts and feed items to say about AI assistance.
    ai_disclosure: str = ""
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
