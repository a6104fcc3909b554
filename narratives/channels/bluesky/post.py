"""What gets posted to Bluesky and the rules it would refuse a post by, checked before any
network: post and embed records, limits, self-labels. SDK-free.

**Content notes become self-labels.** Bluesky's self-labels are few: `sexual`, `nudity`, `porn`
and `graphic-media`. Notes about sexual content or nudity map to those; every other note
(violence, abuse, self-harm, death, ...) maps to `graphic-media`, the label that puts the post
behind a click-through warning, because Bluesky has no milder warning label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narratives.channels.bluesky.text import MAX_GRAPHEMES, count_graphemes, fits
from narratives.core.errors import PermanentChannelError

__all__ = [
    "MAX_IMAGES",
    "MAX_IMAGE_BYTES",
    "MAX_CAPTION_BYTES",
    "SELF_LABELS",
    "BlueskyAccount",
    "BlueskyPost",
    "VideoEmbed",
    "ImageEmbed",
    "Caption",
    "Gates",
    "PublishedRef",
    "check_post",
    "mp4_seconds",
    "VideoUpload",
    "MAX_VIDEO_SECONDS",
    "CREDENTIAL_FAILURES",
    "is_credential_failure",
    "labels_for_content_notes",
    "reject",
]

#: app.bsky.feed.post limits (the text's are in `text`).
MAX_LANGS = 3
MAX_IMAGES = 4
#: "976.56 KB": the lexicon's image blob limit is 1,000,000 bytes.
MAX_IMAGE_BYTES = 1_000_000
MAX_VIDEO_BYTES = 100_000_000
#: app.bsky.embed.video caption files: at most 20 of them, 20,000 bytes each.
MAX_CAPTION_BYTES = 20_000
MAX_CAPTIONS = 20
#: app.bsky.video: videos of at most 3 minutes.
MAX_VIDEO_SECONDS = 180.0
SELF_LABELS = frozenset({"sexual", "nudity", "porn", "graphic-media", "!no-unauthenticated"})


def labels_for_content_notes(notes: Iterable[str]) -> tuple[str, ...]:
    """Bluesky self-labels for a draft's content notes (see the module docstring)."""
    labels = set()
    for note in notes:
        key = re.sub(r"[\s_]+", "-", note.strip().lower())
        if not key:
            continue
        if key in SELF_LABELS:
            labels.add(key)
        elif key in {"explicit", "pornography", "explicit-sexual-content"}:
            labels.add("porn")
        elif key in {"nude", "naked"}:
            labels.add("nudity")
        elif key.startswith("sex") or "sexual" in key:
            labels.add("sexual")
        else:
            labels.add("graphic-media")
    return tuple(sorted(labels))


@dataclass(frozen=True)
class Caption:
    """A WebVTT captions file for a video, in one language (BCP-47, e.g. "en")."""

    path: Path
    lang: str


@dataclass(frozen=True)
class VideoEmbed:
    """An MP4 video with alt text; `aspect_ratio` is (width, height)."""

    path: Path
    alt: str
    aspect_ratio: tuple[int, int] | None = None
    captions: tuple[Caption, ...] = ()


@dataclass(frozen=True)
class ImageEmbed:
    """An image (JPEG, PNG, WebP or GIF) under 1,000,000 bytes, with alt text."""

    path: Path
    alt: str
    aspect_ratio: tuple[int, int] | None = None


@dataclass(frozen=True)
class BlueskyPost:
    """One post. `labels` are self-labels (see `labels_for_content_notes`); `langs` BCP-47 tags."""

    text: str
    langs: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    video: VideoEmbed | None = None
    images: tuple[ImageEmbed, ...] = ()


@dataclass(frozen=True)
class Gates:
    """Who may reply to a thread and whether its posts may be quoted: written as an
    `app.bsky.feed.threadgate` record (on the first post) and `app.bsky.feed.postgate` records
    (on every post), with the post's own record key, in the same write as the post.

    `replies` is ("everyone",) for no threadgate, ("nobody",) for an empty allow list, else any
    of "followers", "following", "mentioned", "lists" (members of `lists`, AT URIs)."""

    replies: tuple[str, ...] = ("everyone",)
    lists: tuple[str, ...] = ()
    quotes: bool = True

    @property
    def threadgate(self) -> bool:
        return "everyone" not in self.replies

    @property
    def postgate(self) -> bool:
        return not self.quotes

    @property
    def any(self) -> bool:
        return self.threadgate or self.postgate

    def as_dict(self) -> dict[str, object]:
        return {"replies": list(self.replies), "lists": list(self.lists), "quotes": self.quotes}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Gates:
        return cls(
            replies=tuple(data.get("replies") or ("everyone",)),  # type: ignore[arg-type]
            lists=tuple(data.get("lists") or ()),  # type: ignore[arg-type]
            quotes=bool(data.get("quotes", True)),
        )


@dataclass(frozen=True)
class PublishedRef:
    """Where a post landed. Stored per post of a delivery as {"uri", "cid", "rkey"}.
    `found` says the post was already on the server (an earlier attempt landed), not sent now."""

    uri: str
    cid: str
    rkey: str
    found: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, str]:
        return {"uri": self.uri, "cid": self.cid, "rkey": self.rkey}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> PublishedRef:
        return cls(uri=data["uri"], cid=data["cid"], rkey=data["rkey"])


@dataclass(frozen=True)
class VideoUpload:
    """How a channel sends videos, and the limits it holds them to (a campaign's
    `video_upload`, `video_service` and `video_limits`; the defaults are the lexicons')."""

    mode: str = "direct"  # "direct" (uploadBlob to the account's server) | "service"
    service_url: str = "https://video.bsky.app"
    max_bytes: int = MAX_VIDEO_BYTES
    max_seconds: float = MAX_VIDEO_SECONDS
    max_captions: int = MAX_CAPTIONS
    max_caption_bytes: int = MAX_CAPTION_BYTES
    #: Seconds between video-service job checks.
    poll: float = 1.0


@dataclass(frozen=True)
class BlueskyAccount:
    """An account to post as. The app password is read from the environment variable
    `password_env` (else from the system keyring, service "narratives-bluesky", user `handle`)."""

    handle: str
    service_url: str = "https://bsky.social"
    password_env: str = "BLUESKY_APP_PASSWORD"


#: What the failures for an account's credentials say (a wrong, revoked or missing app
#: password): `narrative accounts retry` finds the deliveries they stopped by these.
CREDENTIAL_FAILURES = ("refused the credentials", "no app password")


def is_credential_failure(error: str | None) -> bool:
    return bool(error) and any(m in error for m in CREDENTIAL_FAILURES)  # type: ignore[operator]


def reject(message: str, hint: str | None = None) -> PermanentChannelError:
    return PermanentChannelError(message, hint=hint)


def _is_mp4(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(12)
    return len(head) == 12 and head[4:8] == b"ftyp"


def mp4_seconds(path: Path) -> float | None:
    """An MP4's duration from its `mvhd` box (None when it has none): no ffmpeg needed."""
    with path.open("rb") as fh:
        return _find_mvhd(fh, path.stat().st_size)


def _find_mvhd(fh: Any, end: int) -> float | None:
    while fh.tell() + 8 <= end:
        start = fh.tell()
        header = fh.read(8)
        size, kind = int.from_bytes(header[:4], "big"), header[4:8]
        if size == 1:
            size = int.from_bytes(fh.read(8), "big")
        elif size == 0:
            size = end - start
        if size < 8:
            return None
        if kind == b"moov":
            return _find_mvhd(fh, start + size)
        if kind == b"mvhd":
            version = fh.read(4)[0]
            if version == 1:
                fh.read(16)
                timescale = int.from_bytes(fh.read(4), "big")
                duration = int.from_bytes(fh.read(8), "big")
            else:
                fh.read(8)
                timescale = int.from_bytes(fh.read(4), "big")
                duration = int.from_bytes(fh.read(4), "big")
            return duration / timescale if timescale else None
        fh.seek(start + size)
    return None


def check_post(post: BlueskyPost, limits: VideoUpload | None = None) -> None:
    """Raise PermanentChannelError when Bluesky would refuse `post`, or when its video breaks
    the campaign's `limits`; no network involved."""
    limits = limits or VideoUpload()
    if not post.text.strip() and post.video is None and not post.images:
        raise reject("the post is empty")
    if not fits(post.text):
        raise reject(
            f"post text has {count_graphemes(post.text)} graphemes; Bluesky allows {MAX_GRAPHEMES}",
            hint="split it into a thread with split_thread()",
        )
    if len(post.langs) > MAX_LANGS:
        raise reject(f"at most {MAX_LANGS} language tags per post, got {len(post.langs)}")
    unknown = set(post.labels) - SELF_LABELS
    if unknown:
        raise reject(f"not a Bluesky self-label: {', '.join(sorted(unknown))}")
    if post.video is not None and post.images:
        raise reject("a post carries either a video or images, not both")
    if len(post.images) > MAX_IMAGES:
        raise reject(f"at most {MAX_IMAGES} images per post, got {len(post.images)}")
    for image in post.images:
        size = Path(image.path).stat().st_size
        if size >= MAX_IMAGE_BYTES:
            raise reject(f"image {image.path} is {size} bytes; Bluesky takes under 976.56 KB")
    if post.video is not None:
        video = post.video
        if not _is_mp4(Path(video.path)):
            raise reject(f"{video.path} is not an MP4 video; Bluesky only takes video/mp4")
        size = Path(video.path).stat().st_size
        if size > limits.max_bytes:
            raise reject(
                f"video {video.path} is {size:,} bytes; the limit is {limits.max_bytes:,}",
                hint="video_limits.max_bytes in the campaign (Bluesky takes at most 100 MB)",
            )
        seconds = mp4_seconds(Path(video.path))
        if seconds is not None and seconds > limits.max_seconds + 0.5:
            raise reject(
                f"video {video.path} lasts {seconds:.0f} s; the limit is "
                f"{limits.max_seconds:.0f} s",
                hint="video_limits.max_seconds in the campaign (Bluesky takes at most 3 minutes)",
            )
        if len(video.captions) > limits.max_captions:
            raise reject(f"at most {limits.max_captions} caption files per video")
        for caption in video.captions:
            size = Path(caption.path).stat().st_size
            if size > limits.max_caption_bytes:
                raise reject(
                    f"captions {caption.path} are {size:,} bytes; the limit is "
                    f"{limits.max_caption_bytes:,}"
                )


# --- errors ----------------------------------------------------------------------------------
