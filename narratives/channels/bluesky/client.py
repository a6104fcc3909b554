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
- **Errors are sorted for the scheduler** (`errors`): transient ones are worth retrying,
  permanent ones are not.

What a post is and the checks made before any network are in `post`; facets in `facets`.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from atproto import Client, Session, SessionEvent, models
from atproto_client.exceptions import BadRequestError, RequestErrorBase
from atproto_client.request import Request
from atproto_core.uri import AtUri

from narratives.channels.bluesky.errors import classify, error_name, session_rejected
from narratives.channels.bluesky.facets import build_facets
from narratives.channels.bluesky.post import (
    BlueskyAccount,
    BlueskyPost,
    PublishedRef,
    check_post,
    reject,
)
from narratives.channels.bluesky.tids import check_tid
from narratives.core.errors import ChannelError, PermanentChannelError
from narratives.core.files import atomic_write
from narratives.core.workspace import Workspace

__all__ = ["POST_COLLECTION", "BlueskyChannel"]

log = logging.getLogger(__name__)

POST_COLLECTION = "app.bsky.feed.post"
SESSION_SUFFIX = ".session"

T = TypeVar("T")


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
            check_tid(rkey)
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
                error_name(exc.__cause__) == "RecordNotFound"
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
                raise reject(f"{video.path} is {blob.mime_type}; Bluesky only takes video/mp4")
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
                if not session_rejected(exc):
                    raise
                log.info(
                    "Bluesky session for %s no longer accepted; logging in", self.account.handle
                )
                self._forget_session()
                self._login(client)
                return fn(client)
        except (RequestErrorBase, httpx.TransportError) as exc:
            raise classify(exc, action) from exc

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
                    raise classify(exc, "log in") from exc
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
            raise reject(
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
