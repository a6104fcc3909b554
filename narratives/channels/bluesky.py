"""Bluesky: posts, threads and captioned videos through the `atproto` SDK, each exactly once.

Design choices, since they are not obvious from the calls:

- **Exactly once.** The caller fixes every post's record key (a TID, `new_tid()`) before the first
  attempt, normally when a delivery is scheduled. Publishing is `com.atproto.repo.createRecord`
  with that rkey. After any error or a lost reply we ask `getRecord` for the same rkey: if the
  earlier attempt landed we return that record instead of posting again. (The PDS answers a
  duplicate rkey with HTTP 500, not 409, so a 500 is checked like any other failure.) A thread is
  a list of posts, each with its own rkey; publishing resumes at the first post not yet on the
  server and replies to the previous one.
- **Only `com.atproto.*` calls.** A bare PDS has no AppView, so we log in with
  `fetch_bsky_profile=False` and never use the SDK's `send_*` helpers, which read the profile.
- **One login per account.** The exported session (tokens, never the app password) is kept in a
  0600 file under the workspace's private state folder and reused, refreshed by the SDK when the
  access token nears expiry and replaced by a fresh login when the server no longer accepts it.
  Logins are rate limited to 30 per 5 minutes per account.
- **Errors are sorted for the scheduler**: `TransientChannelError` (network, 5xx, 429 with
  `retry_after` from `ratelimit-reset`) is worth retrying; `PermanentChannelError` (bad
  credentials, invalid record, blob too large, unsupported media) is not.
- **Content notes become self-labels.** Bluesky's self-labels are few: `sexual`, `nudity`,
  `porn` and `graphic-media`. Notes about sexual content or nudity map to those; every other
  note (violence, abuse, self-harm, death, ...) maps to `graphic-media`, the label that puts the
  post behind a click-through warning, because Bluesky has no milder warning label.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from atproto import Client, Session, SessionEvent, models
from atproto_client.exceptions import (
    BadRequestError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    UnauthorizedError,
)
from atproto_client.request import Request
from atproto_core.uri import AtUri

from narratives.channels.bluesky_text import (  # noqa: F401  (re-exported)
    MAX_GRAPHEMES,
    MAX_TEXT_BYTES,
    _fits,
    count_graphemes,
    split_thread,
)
from narratives.core.errors import ChannelError, PermanentChannelError, TransientChannelError
from narratives.core.files import atomic_write
from narratives.core.workspace import Workspace

__all__ = [
    "MAX_GRAPHEMES",
    "MAX_TEXT_BYTES",
    "MAX_IMAGES",
    "MAX_IMAGE_BYTES",
    "MAX_CAPTION_BYTES",
    "SELF_LABELS",
    "POST_COLLECTION",
    "BlueskyAccount",
    "BlueskyPost",
    "VideoEmbed",
    "ImageEmbed",
    "Caption",
    "PublishedRef",
    "BlueskyChannel",
    "check_post",
    "count_graphemes",
    "build_facets",
    "split_thread",
    "labels_for_content_notes",
    "new_tid",
    "thread_rkeys",
]

log = logging.getLogger(__name__)

#: app.bsky.feed.post limits (the text's are in bluesky_text).
MAX_LANGS = 3
MAX_IMAGES = 4
#: "976.56 KB": the lexicon's image blob limit is 1,000,000 bytes.
MAX_IMAGE_BYTES = 1_000_000
MAX_VIDEO_BYTES = 100_000_000
#: app.bsky.embed.video caption files: at most 20 of them, 20,000 bytes each.
MAX_CAPTION_BYTES = 20_000
MAX_CAPTIONS = 20
MAX_TAG_GRAPHEMES = 64
SELF_LABELS = frozenset({"sexual", "nudity", "porn", "graphic-media", "!no-unauthenticated"})
POST_COLLECTION = "app.bsky.feed.post"
SESSION_SUFFIX = ".session"

T = TypeVar("T")


# --- text: graphemes, facets, threads --------------------------------------------------------


_URL = re.compile(r"(?:^|(?<=[\s(\[]))https?://[^\s<>\"]+", re.IGNORECASE)
_MENTION = re.compile(r"(?:^|(?<=[\s(\[]))@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)")
_TAG = re.compile(r"(?:^|(?<=\s))[#\uff03](\S+)")
_URL_TRAILING = ".,;:!?'\"”’"
_TAG_INVISIBLE = "\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2\ufe0f"


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def _trim_url(url: str) -> str:
    while url and (
        url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))
    ):
        url = url[:-1]
    return url


def _trim_tag(tag: str) -> str | None:
    """Bluesky's rule: trailing punctuation is not part of a tag; a tag is not only digits."""
    while tag and _is_punctuation(tag[-1]):
        tag = tag[:-1]
    if not tag or tag[0] in _TAG_INVISIBLE or any(c in _TAG_INVISIBLE for c in tag):
        return None
    if all(c.isdigit() or _is_punctuation(c) for c in tag):
        return None
    if count_graphemes(tag) > MAX_TAG_GRAPHEMES:
        return None
    return tag


def _slice(text: str, start: int, end: int) -> models.AppBskyRichtextFacet.ByteSlice:
    byte_start = len(text[:start].encode("utf-8"))
    byte_end = byte_start + len(text[start:end].encode("utf-8"))
    return models.AppBskyRichtextFacet.ByteSlice(byte_start=byte_start, byte_end=byte_end)


def build_facets(
    text: str, resolve_handle: Callable[[str], str | None] | None = None
) -> list[models.AppBskyRichtextFacet.Main]:
    """Facets for the links, #hashtags and @mentions in `text`, with UTF-8 byte offsets.

    Links must start with http:// or https:// (bare domains stay text, as they are easily
    confused with handles). `resolve_handle` maps a handle to its DID or None; a mention that
    does not resolve, or any mention when no resolver is given, stays plain text.
    """
    facets: list[tuple[int, models.AppBskyRichtextFacet.Main]] = []

    for match in _URL.finditer(text):
        url = _trim_url(match.group(0))
        if len(url) <= len("https://"):
            continue
        start = match.start()
        feature = models.AppBskyRichtextFacet.Link(uri=url)
        index = _slice(text, start, start + len(url))
        facets.append((start, models.AppBskyRichtextFacet.Main(index=index, features=[feature])))

    if resolve_handle is not None:
        for match in _MENTION.finditer(text):
            handle = match.group(1)
            if "." not in handle:
                continue
            did = resolve_handle(handle.lower())
            if not did:
                continue
            feature = models.AppBskyRichtextFacet.Mention(did=did)
            index = _slice(text, match.start(), match.end())
            facets.append(
                (match.start(), models.AppBskyRichtextFacet.Main(index=index, features=[feature]))
            )

    for match in _TAG.finditer(text):
        tag = _trim_tag(match.group(1))
        if tag is None:
            continue
        start = match.start()
        end = match.start(1) + len(tag)
        feature = models.AppBskyRichtextFacet.Tag(tag=tag)
        facets.append(
            (
                start,
                models.AppBskyRichtextFacet.Main(
                    index=_slice(text, start, end), features=[feature]
                ),
            )
        )

    return [facet for _, facet in sorted(facets, key=lambda item: item[0])]


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


# --- record keys -----------------------------------------------------------------------------

_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID_RE = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
#: new_tid() uses clock ids below this, so thread_rkeys() has room to count up without wrapping.
_CLOCK_IDS = 512
_tid_lock = threading.Lock()
_last_tid_micros = 0


def _encode_tid(micros: int, clock_id: int) -> str:
    value = (micros << 10) | clock_id
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _decode_tid(tid: str) -> tuple[int, int]:
    if not _TID_RE.match(tid):
        raise ValueError(f"not a TID record key: {tid!r}")
    value = 0
    for char in tid:
        value = value * 32 + _TID_ALPHABET.index(char)
    return value >> 10, value & 1023


def new_tid() -> str:
    """A fresh record key (TID): microseconds since the epoch, strictly increasing here."""
    global _last_tid_micros
    with _tid_lock:
        micros = max(time.time_ns() // 1000, _last_tid_micros + 1)
        _last_tid_micros = micros
    return _encode_tid(micros, secrets.randbelow(_CLOCK_IDS))


def thread_rkeys(first: str, count: int) -> list[str]:
    """Record keys for a thread of `count` posts, derived from the first one.

    A delivery stores one rkey; its thread's other keys are the same timestamp with the next
    clock ids, so they are fixed as soon as the first is, and sort in thread order.
    """
    micros, clock_id = _decode_tid(first)
    if count < 1 or clock_id + count > 1024:
        raise ValueError(f"cannot derive {count} record keys from {first!r}")
    return [_encode_tid(micros, clock_id + i) for i in range(count)]


# --- what gets posted ------------------------------------------------------------------------


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


def _reject(message: str, hint: str | None = None) -> PermanentChannelError:
    return PermanentChannelError(message, hint=hint)


def _is_mp4(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(12)
    return len(head) == 12 and head[4:8] == b"ftyp"


def check_post(post: BlueskyPost) -> None:
    """Raise PermanentChannelError when Bluesky would refuse `post`; no network involved."""
    if not post.text.strip() and post.video is None and not post.images:
        raise _reject("the post is empty")
    if not _fits(post.text):
        raise _reject(
            f"post text has {count_graphemes(post.text)} graphemes; Bluesky allows {MAX_GRAPHEMES}",
            hint="split it into a thread with split_thread()",
        )
    if len(post.langs) > MAX_LANGS:
        raise _reject(f"at most {MAX_LANGS} language tags per post, got {len(post.langs)}")
    unknown = set(post.labels) - SELF_LABELS
    if unknown:
        raise _reject(f"not a Bluesky self-label: {', '.join(sorted(unknown))}")
    if post.video is not None and post.images:
        raise _reject("a post carries either a video or images, not both")
    if len(post.images) > MAX_IMAGES:
        raise _reject(f"at most {MAX_IMAGES} images per post, got {len(post.images)}")
    for image in post.images:
        size = Path(image.path).stat().st_size
        if size >= MAX_IMAGE_BYTES:
            raise _reject(f"image {image.path} is {size} bytes; Bluesky takes under 976.56 KB")
    if post.video is not None:
        video = post.video
        if not _is_mp4(Path(video.path)):
            raise _reject(f"{video.path} is not an MP4 video; Bluesky only takes video/mp4")
        size = Path(video.path).stat().st_size
        if size > MAX_VIDEO_BYTES:
            raise _reject(f"video {video.path} is {size} bytes; Bluesky takes at most 100 MB")
        if len(video.captions) > MAX_CAPTIONS:
            raise _reject(f"at most {MAX_CAPTIONS} caption files per video")
        for caption in video.captions:
            size = Path(caption.path).stat().st_size
            if size > MAX_CAPTION_BYTES:
                raise _reject(
                    f"captions {caption.path} are {size} bytes; Bluesky takes at most 20,000"
                )


# --- errors ----------------------------------------------------------------------------------


def _error_name(exc: RequestErrorBase) -> str:
    content = exc.response.content if exc.response is not None else None
    return getattr(content, "error", None) or ""


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, RequestErrorBase) and exc.response is not None:
        return exc.response.status_code
    return None


def _rate_limit_delay(exc: RateLimitExceededError) -> float | None:
    if exc.reset_at is not None:
        return max((exc.reset_at - datetime.now(UTC)).total_seconds(), 0.0)
    return exc.retry_after


def _classify(exc: BaseException, action: str) -> ChannelError:
    """Map an SDK or transport failure to a transient or permanent channel error."""
    if isinstance(exc, ChannelError):
        return exc
    status = _status(exc)
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, RateLimitExceededError):
        delay = _rate_limit_delay(exc)
        return TransientChannelError(
            f"Bluesky rate limit reached while trying to {action}",
            retry_after=delay,
            hint=f"retry in {delay:.0f} s" if delay is not None else None,
        )
    if isinstance(exc, httpx.TransportError) or (isinstance(exc, NetworkError) and status is None):
        cause = exc.__cause__ or exc
        return TransientChannelError(
            f"cannot reach Bluesky to {action}: {type(cause).__name__} {cause}".rstrip()
        )
    if status == 413:
        return _reject(f"Bluesky refused to {action}: the file is too large ({detail})")
    if isinstance(exc, UnauthorizedError):
        return _reject(
            f"Bluesky refused the credentials while trying to {action} ({detail})",
            hint="check the account's app password",
        )
    if isinstance(exc, BadRequestError):
        return _reject(f"Bluesky rejected the request to {action} ({detail})")
    if status is not None and (status >= 500 or status in {408, 409}):
        return TransientChannelError(f"Bluesky failed to {action} ({detail})")
    if status is not None:
        return _reject(f"Bluesky refused to {action} ({detail})")
    return TransientChannelError(f"failed to {action}: {detail}")


_SESSION_GONE = {"ExpiredToken", "InvalidToken", "AuthenticationRequired", "AuthMissing"}


def _session_rejected(exc: BaseException) -> bool:
    return isinstance(exc, UnauthorizedError | BadRequestError) and (
        _error_name(exc) in _SESSION_GONE or _status(exc) == 401
    )


# --- the channel -----------------------------------------------------------------------------


class BlueskyChannel:
    """Publishes posts and threads for one account, exactly once per record key.

    `transport` is handed to httpx (tests use it to observe or inject faults); `timeout` is
    seconds per request. Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        account: BlueskyAccount,
        workspace: Workspace,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.account = account
        self.workspace = workspace
        self._transport = transport
        self._timeout = timeout
        self._client: Client | None = None
        self._did: str | None = None
        self._handles: dict[str, str | None] = {}

    # -- public ---------------------------------------------------------------------------

    def publish(
        self,
        posts: Sequence[BlueskyPost],
        rkeys: Sequence[str],
        already: Sequence[PublishedRef] = (),
        on_progress: Callable[[list[PublishedRef]], None] | None = None,
    ) -> list[PublishedRef]:
        """Publish `posts` as a thread (one post is a thread of one); return every post's ref.

        `rkeys[i]` is post i's record key, fixed before the first attempt. `already` holds the
        refs of the leading posts known to be published; the rest are published in order, each
        replying to the previous, and a post whose rkey is found on the server is not posted
        again. `on_progress` gets the refs so far after each post, to be stored by the caller.
        """
        if len(posts) != len(rkeys) or not posts:
            raise ValueError("publish needs one record key per post, and at least one post")
        if len(set(rkeys)) != len(rkeys):
            raise ValueError("record keys of a thread must differ")
        for rkey in rkeys:
            _decode_tid(rkey)
        if len(already) > len(posts) or any(
            ref.rkey != rkey for ref, rkey in zip(already, rkeys, strict=False)
        ):
            raise ValueError("`already` must be the refs of the first posts, in order")
        for post in posts[len(already) :]:
            check_post(post)

        refs = list(already)
        for post, rkey in zip(posts[len(refs) :], rkeys[len(refs) :], strict=True):
            reply = None
            if refs:
                root = models.ComAtprotoRepoStrongRef.Main(uri=refs[0].uri, cid=refs[0].cid)
                parent = models.ComAtprotoRepoStrongRef.Main(uri=refs[-1].uri, cid=refs[-1].cid)
                reply = models.AppBskyFeedPost.ReplyRef(root=root, parent=parent)
            refs.append(self._publish_one(post, rkey, reply))
            if on_progress is not None:
                on_progress(list(refs))
        return refs

    def lookup(self, rkey: str) -> PublishedRef | None:
        """The post with this record key on the server, or None if there is none."""
        did = self._ensure_login()
        params = models.ComAtprotoRepoGetRecord.Params(
            repo=did, collection=POST_COLLECTION, rkey=rkey
        )
        try:
            found = self._call(lambda c: c.com.atproto.repo.get_record(params), "look up a post")
        except PermanentChannelError as exc:
            if isinstance(exc.__cause__, BadRequestError) and (
                _error_name(exc.__cause__) == "RecordNotFound"
            ):
                return None
            raise
        return PublishedRef(uri=found.uri, cid=found.cid or "", rkey=rkey)

    def delete(self, refs: Iterable[PublishedRef | str]) -> None:
        """Delete posts (refs or at:// URIs), last first; deleting a deleted post is fine."""
        did = self._ensure_login()
        for item in reversed(list(refs)):
            uri = AtUri.from_str(item.uri if isinstance(item, PublishedRef) else item)
            if uri.host != did or uri.collection != POST_COLLECTION:
                raise ValueError(f"{uri} is not a post of {self.account.handle}")
            data = models.ComAtprotoRepoDeleteRecord.Data(
                repo=did, collection=uri.collection, rkey=uri.rkey
            )
            self._call(lambda c, d=data: c.com.atproto.repo.delete_record(d), "delete a post")

    def close(self) -> None:
        if self._client is not None:
            self._client.request.close()
            self._client = None
            self._did = None

    def __enter__(self) -> BlueskyChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- publishing -----------------------------------------------------------------------

    def _publish_one(
        self, post: BlueskyPost, rkey: str, reply: models.AppBskyFeedPost.ReplyRef | None
    ) -> PublishedRef:
        did = self._ensure_login()
        if post.video is not None or post.images:
            # Look before uploading: a resumed thread should not send a video twice.
            found = self.lookup(rkey)
            if found is not None:
                return found
        record = models.AppBskyFeedPost.Record(
            text=post.text,
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            facets=build_facets(post.text, self._resolve_handle) or None,
            langs=list(post.langs) or None,
            labels=_self_labels(post.labels),
            embed=self._embed(post),
            reply=reply,
        )
        data = models.ComAtprotoRepoCreateRecord.Data(
            repo=did, collection=POST_COLLECTION, rkey=rkey, record=record
        )
        try:
            created = self._call(lambda c: c.com.atproto.repo.create_record(data), "publish a post")
            return PublishedRef(uri=created.uri, cid=created.cid, rkey=rkey)
        except ChannelError as exc:
            failure = exc
        # The attempt may have landed although we heard otherwise: a lost reply, or the 500
        # the PDS answers when the rkey already exists. The server knows; ask it.
        try:
            found = self.lookup(rkey)
        except ChannelError:
            found = None
        if found is not None:
            log.info("post %s was already published as %s", rkey, found.uri)
            return found
        raise failure

    def _embed(self, post: BlueskyPost) -> Any:
        if post.video is not None:
            video = post.video
            blob = self._upload(Path(video.path), "video/mp4")
            if blob.mime_type != "video/mp4":
                raise _reject(f"{video.path} is {blob.mime_type}; Bluesky only takes video/mp4")
            captions = [
                models.AppBskyEmbedVideo.Caption(
                    file=self._upload(Path(c.path), "text/vtt"), lang=c.lang
                )
                for c in video.captions
            ]
            return models.AppBskyEmbedVideo.Main(
                video=blob,
                alt=video.alt,
                aspect_ratio=_aspect_ratio(video.aspect_ratio),
                captions=captions or None,
            )
        if post.images:
            images = [
                models.AppBskyEmbedImages.Image(
                    alt=image.alt,
                    image=self._upload(Path(image.path), _guess_type(Path(image.path))),
                    aspect_ratio=_aspect_ratio(image.aspect_ratio),
                )
                for image in post.images
            ]
            return models.AppBskyEmbedImages.Main(images=images)
        return None

    def _upload(self, path: Path, mime: str) -> Any:
        content = path.read_bytes()
        # `content=` rather than the SDK's `data=`: httpx deprecates raw bytes as `data`.
        response = self._call(
            lambda c: c.com.atproto.repo.upload_blob(
                None, content=content, headers={"Content-Type": mime}
            ),
            f"upload {path.name}",
        )
        return response.blob

    def _resolve_handle(self, handle: str) -> str | None:
        if handle not in self._handles:
            params = models.ComAtprotoIdentityResolveHandle.Params(handle=handle)
            try:
                did = self._call(
                    lambda c: c.com.atproto.identity.resolve_handle(params), "resolve a mention"
                ).did
            except PermanentChannelError:
                did = None  # no such handle: the mention stays plain text
            self._handles[handle] = did
        return self._handles[handle]

    # -- sessions -------------------------------------------------------------------------

    @property
    def session_path(self) -> Path:
        """Where this account's exported session is kept (mode 0600)."""
        host = urlsplit(self.account.service_url).netloc or self.account.service_url
        name = re.sub(r"[^A-Za-z0-9.@-]", "_", f"{self.account.handle}@{host}")
        return self.workspace.state_dir / "bluesky" / f"{name}{SESSION_SUFFIX}"

    def _call(self, fn: Callable[[Client], T], action: str) -> T:
        """Run an SDK call; log in again once if the server no longer takes the session."""
        client = self._new_client() if self._client is None else self._client
        try:
            try:
                return fn(client)
            except (RequestErrorBase, httpx.TransportError) as exc:
                # Whether it came from the file or from a login in this process: a session
                # the server revoked or let expire is replaced by one new login, or a
                # long-running scheduler would fail every post until restarted.
                if not _session_rejected(exc):
                    raise
                log.info(
                    "Bluesky session for %s no longer accepted; logging in", self.account.handle
                )
                self._forget_session()
                self._login(client)
                return fn(client)
        except (RequestErrorBase, httpx.TransportError) as exc:
            raise _classify(exc, action) from exc

    def _ensure_login(self) -> str:
        if self._did is None:
            client = self._new_client()
            saved = self._read_session()
            if saved is not None:
                # Importing a session makes no request; the first call refreshes it if needed.
                client.login(session_string=saved, fetch_bsky_profile=False)
                self._did = Session.decode(saved).did
            else:
                try:
                    self._login(client)
                except (RequestErrorBase, httpx.TransportError) as exc:
                    raise _classify(exc, "log in") from exc
        return self._did  # type: ignore[return-value]

    def _new_client(self) -> Client:
        if self._client is None:
            request = Request(transport=self._transport, timeout=self._timeout)
            client = Client(self.account.service_url, request=request)
            client.on_session_change(self._on_session_change)
            self._client = client
        return self._client

    def _login(self, client: Client) -> None:
        password = self._password()
        client.login(self.account.handle, password, fetch_bsky_profile=False)
        self._did = Session.decode(client.export_session_string()).did
        log.info("logged in to Bluesky as %s", self.account.handle)

    def _password(self) -> str:
        password = os.environ.get(self.account.password_env)
        if not password:
            password = _keyring_password(self.account.handle)
        if not password:
            raise _reject(
                f"no app password for Bluesky account {self.account.handle}",
                hint=f"set the environment variable {self.account.password_env} "
                "(an app password from Settings → App passwords)",
            )
        return password

    def _on_session_change(self, event: SessionEvent, session: Session) -> None:
        if event in (SessionEvent.CREATE, SessionEvent.REFRESH):
            self._write_session(session.export())

    def _read_session(self) -> str | None:
        try:
            text = self.session_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def _write_session(self, session_string: str) -> None:
        path = self.session_path
        self.workspace.state_dir.mkdir(mode=0o700, exist_ok=True)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        atomic_write(path, session_string, mode=0o600, fsync=True)

    def _forget_session(self) -> None:
        self.session_path.unlink(missing_ok=True)


def _keyring_password(handle: str) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password("narratives-bluesky", handle)
        except KeyringError:
            return None
    except ImportError:
        return None


def _self_labels(labels: Sequence[str]) -> models.ComAtprotoLabelDefs.SelfLabels | None:
    if not labels:
        return None
    values = [models.ComAtprotoLabelDefs.SelfLabel(val=label) for label in dict.fromkeys(labels)]
    return models.ComAtprotoLabelDefs.SelfLabels(values=values)


def _aspect_ratio(ratio: tuple[int, int] | None) -> models.AppBskyEmbedDefs.AspectRatio | None:
    if ratio is None:
        return None
    width, height = ratio
    return models.AppBskyEmbedDefs.AspectRatio(width=width, height=height)


def _guess_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
