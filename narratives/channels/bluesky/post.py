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
from dataclasses import dataclass
from pathlib import Path

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
    "PublishedRef",
    "check_post",
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
class PublishedRef:
    """Where a post landed. Stored per post of a delivery as {"uri", "cid", "rkey"}."""

    uri: str
    cid: str
    rkey: str

    def as_dict(self) -> dict[str, str]:
        return {"uri": self.uri, "cid": self.cid, "rkey": self.rkey}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> PublishedRef:
        return cls(uri=data["uri"], cid=data["cid"], rkey=data["rkey"])


@dataclass(frozen=True)
class BlueskyAccount:
    """An account to post as. The app password is read from the environment variable
    `password_env` (else from the system keyring, service "narratives-bluesky", user `handle`)."""

    handle: str
    service_url: str = "https://bsky.social"
    password_env: str = "BLUESKY_APP_PASSWORD"


def reject(message: str, hint: str | None = None) -> PermanentChannelError:
    return PermanentChannelError(message, hint=hint)


def _is_mp4(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(12)
    return len(head) == 12 and head[4:8] == b"ftyp"


def check_post(post: BlueskyPost) -> None:
    """Raise PermanentChannelError when Bluesky would refuse `post`; no network involved."""
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
        if size > MAX_VIDEO_BYTES:
            raise reject(f"video {video.path} is {size} bytes; Bluesky takes at most 100 MB")
        if len(video.captions) > MAX_CAPTIONS:
            raise reject(f"at most {MAX_CAPTIONS} caption files per video")
        for caption in video.captions:
            size = Path(caption.path).stat().st_size
            if size > MAX_CAPTION_BYTES:
                raise reject(
                    f"captions {caption.path} are {size} bytes; Bluesky takes at most 20,000"
                )


# --- errors ----------------------------------------------------------------------------------
