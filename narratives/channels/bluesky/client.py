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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from atproto import Client, Session, SessionEvent, models
from atproto_client.exceptions import BadRequestError, RequestErrorBase
from atproto_client.models.blob_ref import BlobRef
from atproto_client.request import Request
from atproto_core.uri import AtUri

from narratives.channels.bluesky.errors import classify, error_name, session_rejected
from narratives.channels.bluesky.facets import build_facets
from narratives.channels.bluesky.post import (
    BlueskyAccount,
    BlueskyPost,
    Gates,
    PublishedRef,
    VideoUpload,
    check_post,
    reject,
)
from narratives.channels.bluesky.tids import check_tid
from narratives.channels.bluesky.video import VideoService
from narratives.core.errors import ChannelError, PermanentChannelError
from narratives.core.files import atomic_write
from narratives.core.workspace import Workspace

__all__ = ["POSTGATE_COLLECTION", "POST_COLLECTION", "THREADGATE_COLLECTION", "BlueskyChannel"]

log = logging.getLogger(__name__)

POST_COLLECTION = "app.bsky.feed.post"
THREADGATE_COLLECTION = "app.bsky.feed.threadgate"
POSTGATE_COLLECTION = "app.bsky.feed.postgate"
#: Uploads are read from disk in pieces of this size, never whole into memory.
UPLOAD_CHUNK = 1 << 20
SESSION_SUFFIX = ".session"

T = TypeVar("T")


# --- the channel -----------------------------------------------------------------------------


class BlueskyChannel:
    """Publishes posts and threads for one account, exactly once per record key.

    `transport` is handed to httpx (tests use it to observe or inject faults); `timeout` is
    seconds per request. `video` says how videos are sent (directly, or through Bluesky's video
    service) and the limits they are held to. Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        account: BlueskyAccount,
        workspace: Workspace,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        video: VideoUpload | None = None,
    ) -> None:
        self.account = account
        self.workspace = workspace
        self.video = video or VideoUpload()
        self._transport = transport
        self._timeout = timeout
        self._video_service: VideoService | None = None
        #: Requests made through the SDK (for the engagement figures).
        self.requests = 0
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
        gates: Gates | None = None,
    ) -> list[PublishedRef]:
        """Publish `posts` as a thread (one post is a thread of one); return every post's ref.

        `rkeys[i]` is post i's record key, fixed before the first attempt. `already` holds the
        refs of the leading posts known to be published; the rest are published in order, each
        replying to the previous, and a post whose rkey is found on the server is not posted
        again. `on_progress` gets the refs so far after each post, to be stored by the caller.
        `gates` (reply and quote controls) are written in the same `applyWrites` as each post,
        so a post is never out without them, and a post found on the server has them already.
        A ref has `found` set when its post was already on the server.
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
            check_post(post, self.video)

        refs = list(already)
        for post, rkey in zip(posts[len(refs) :], rkeys[len(refs) :], strict=True):
            reply = None
            if refs:
                root = models.ComAtprotoRepoStrongRef.Main(uri=refs[0].uri, cid=refs[0].cid)
                parent = models.ComAtprotoRepoStrongRef.Main(uri=refs[-1].uri, cid=refs[-1].cid)
                reply = models.AppBskyFeedPost.ReplyRef(root=root, parent=parent)
            refs.append(self._publish_one(post, rkey, reply, gates, root=not refs))
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
        return PublishedRef(uri=found.uri, cid=found.cid or "", rkey=rkey, found=True)

    def gate_records(self, rkey: str) -> dict[str, Any]:
        """The threadgate and postgate records with this record key on the server, by
        collection (missing ones left out)."""
        did = self._ensure_login()
        out: dict[str, Any] = {}
        for collection in (THREADGATE_COLLECTION, POSTGATE_COLLECTION):
            params = models.ComAtprotoRepoGetRecord.Params(
                repo=did, collection=collection, rkey=rkey
            )
            try:
                found = self._call(
                    lambda c, p=params: c.com.atproto.repo.get_record(p), "look up a gate"
                )
            except PermanentChannelError as exc:
                if isinstance(exc.__cause__, BadRequestError) and (
                    error_name(exc.__cause__) == "RecordNotFound"
                ):
                    continue
                raise
            out[collection] = found.value
        return out

    def delete(self, refs: Iterable[PublishedRef | str]) -> None:
        """Delete posts (refs or at:// URIs), last first, each with its threadgate and
        postgate (same record key); deleting a deleted record is fine."""
        did = self._ensure_login()
        for item in reversed(list(refs)):
            uri = AtUri.from_str(item.uri if isinstance(item, PublishedRef) else item)
            if uri.host != did or uri.collection != POST_COLLECTION:
                raise ValueError(f"{uri} is not a post of {self.account.handle}")
            for collection in (POST_COLLECTION, THREADGATE_COLLECTION, POSTGATE_COLLECTION):
                data = models.ComAtprotoRepoDeleteRecord.Data(
                    repo=did, collection=collection, rkey=uri.rkey
                )
                self._call(lambda c, d=data: c.com.atproto.repo.delete_record(d), "delete a post")

    # -- after posting: what the AppView says (read through the account's server) ---------------

    def post_counts(self, uris: Sequence[str]) -> dict[str, dict[str, int]]:
        """Likes, reposts, replies and quotes of posts (`app.bsky.feed.getPosts`, 25 a request),
        by URI; a post the AppView does not know (deleted, not indexed yet) is left out."""
        self._ensure_login()  # as the account, as its app would ask
        out: dict[str, dict[str, int]] = {}
        for i in range(0, len(uris), 25):
            params = models.AppBskyFeedGetPosts.Params(uris=list(uris[i : i + 25]))
            found = self._call(lambda c, p=params: c.app.bsky.feed.get_posts(p), "read post counts")
            for post in found.posts:
                out[post.uri] = {
                    "likes": post.like_count or 0,
                    "reposts": post.repost_count or 0,
                    "replies": post.reply_count or 0,
                    "quotes": post.quote_count or 0,
                }
        return out

    def replies_to(self, uri: str) -> list[dict[str, Any]]:
        """The direct replies to a post, as the AppView shows them to the account."""
        self._ensure_login()  # as the account, as its app would ask
        params = models.AppBskyFeedGetPostThread.Params(uri=uri, depth=1, parent_height=0)
        found = self._call(lambda c: c.app.bsky.feed.get_post_thread(params), "read replies")
        return [
            _post_view(r.post)
            for r in getattr(found.thread, "replies", None) or ()
            if getattr(r, "post", None)
        ]

    def quotes_of(self, uri: str) -> list[dict[str, Any]]:
        """The posts quoting a post (`app.bsky.feed.getQuotes`)."""
        self._ensure_login()  # as the account, as its app would ask
        params = models.AppBskyFeedGetQuotes.Params(uri=uri, limit=100)
        found = self._call(lambda c: c.app.bsky.feed.get_quotes(params), "read quotes")
        return [_post_view(p) for p in found.posts]

    def hide_reply(self, rkey: str, reply_uri: str) -> bool:
        """Hide a reply to the thread whose first post has `rkey` (the threadgate's
        `hiddenReplies`; who may reply stays as it was). False if it was hidden already."""
        did = self._ensure_login()
        post_uri = f"at://{did}/{POST_COLLECTION}/{rkey}"
        current, cid = self._gate(THREADGATE_COLLECTION, rkey)
        hidden = list(getattr(current, "hidden_replies", None) or [])
        if reply_uri in hidden:
            return False
        record = models.AppBskyFeedThreadgate.Record(
            post=post_uri,
            allow=getattr(current, "allow", None),
            hidden_replies=[*hidden, reply_uri],
            created_at=getattr(current, "created_at", None) or _now(),
        )
        self._put(THREADGATE_COLLECTION, rkey, record, cid, "hide a reply")
        return True

    def detach_quote(self, rkey: str, quote_uri: str) -> bool:
        """Detach a quote post from the post with `rkey` (the postgate's
        `detachedEmbeddingUris`). False if it was detached already."""
        did = self._ensure_login()
        post_uri = f"at://{did}/{POST_COLLECTION}/{rkey}"
        current, cid = self._gate(POSTGATE_COLLECTION, rkey)
        detached = list(getattr(current, "detached_embedding_uris", None) or [])
        if quote_uri in detached:
            return False
        record = models.AppBskyFeedPostgate.Record(
            post=post_uri,
            embedding_rules=getattr(current, "embedding_rules", None),
            detached_embedding_uris=[*detached, quote_uri],
            created_at=getattr(current, "created_at", None) or _now(),
        )
        self._put(POSTGATE_COLLECTION, rkey, record, cid, "detach a quote")
        return True

    def _gate(self, collection: str, rkey: str) -> tuple[Any, str | None]:
        did = self._ensure_login()
        params = models.ComAtprotoRepoGetRecord.Params(repo=did, collection=collection, rkey=rkey)
        try:
            found = self._call(lambda c: c.com.atproto.repo.get_record(params), "read a gate")
        except PermanentChannelError as exc:
            if isinstance(exc.__cause__, BadRequestError) and (
                error_name(exc.__cause__) == "RecordNotFound"
            ):
                return None, None
            raise
        return found.value, found.cid

    def _put(self, collection: str, rkey: str, record: Any, swap: str | None, action: str) -> None:
        # swapRecord: a concurrent change (another editor) fails this write instead of being lost.
        data = models.ComAtprotoRepoPutRecord.Data(
            repo=self._ensure_login(),
            collection=collection,
            rkey=rkey,
            record=record,
            swap_record=swap,
        )
        self._call(lambda c: c.com.atproto.repo.put_record(data), action)

    def check_login(self) -> str:
        """Log in afresh with the app password (never the saved session) and keep the new
        session; return the account's DID. A revoked or wrong password raises
        PermanentChannelError and forgets the saved session, so nothing keeps posting on it."""
        client = self._new_client()
        try:
            self._login(client)
        except (RequestErrorBase, httpx.TransportError) as exc:
            failure = classify(exc, "log in")
            if isinstance(failure, PermanentChannelError):
                self._forget_session()
                self._did = None
            raise failure from exc
        except PermanentChannelError:
            self._forget_session()  # no app password any more
            self._did = None
            raise
        return self._did  # type: ignore[return-value]

    def logout(self) -> bool:
        """End the saved session on the server and forget it here; True when there was one.

        `com.atproto.server.deleteSession` is authorised by the session's refresh token
        (`auth: refresh`), not its access token, so that token is the bearer. The session is
        forgotten here whatever the server says; when the server does not end it (refused, or
        unreachable) a ChannelError says so: its refresh token may then work until it expires.
        """
        saved = self._read_session()
        if saved is None:
            return False
        action = f"end the session of {self.account.handle} on {self.account.service_url}"
        try:
            client = self._new_client()
            client.login(session_string=saved, fetch_bsky_profile=False)
            # No automatic refresh first (ignore_session_check): that would rotate the very
            # token being revoked and save a new session.
            client.com.atproto.server.delete_session(
                headers=client._get_refresh_auth_headers(), ignore_session_check=True
            )
        except (RequestErrorBase, httpx.TransportError) as exc:
            failure = classify(exc, action)
            failure.hint = (
                "on the server it lasts until it expires, or until the app password is revoked"
            )
            raise failure from exc
        except ValueError as exc:  # an unreadable saved session: nothing to send
            raise PermanentChannelError(
                f"cannot {action}: the saved session is unreadable ({exc})",
                hint="it is forgotten here; revoke the app password to end it on the server",
            ) from exc
        finally:
            self._forget_session()
            self.close()
        return True

    def close(self) -> None:
        if self._video_service is not None:
            self._video_service.close()
            self._video_service = None
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
        self,
        post: BlueskyPost,
        rkey: str,
        reply: models.AppBskyFeedPost.ReplyRef | None,
        gates: Gates | None = None,
        *,
        root: bool = True,
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
        try:
            if gates is not None and gates.any:
                return self._create_with_gates(did, rkey, record, gates, root=root)
            data = models.ComAtprotoRepoCreateRecord.Data(
                repo=did, collection=POST_COLLECTION, rkey=rkey, record=record
            )
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

    def _create_with_gates(
        self, did: str, rkey: str, record: Any, gates: Gates, *, root: bool
    ) -> PublishedRef:
        """The post and its gates in one `applyWrites`: all land, or none."""
        uri = f"at://{did}/{POST_COLLECTION}/{rkey}"
        created_at = record.created_at
        Create = models.ComAtprotoRepoApplyWrites.Create
        writes = [Create(collection=POST_COLLECTION, rkey=rkey, value=record)]
        if gates.threadgate and root:
            # A threadgate applies to a whole thread and only on its first post.
            writes.append(
                Create(
                    collection=THREADGATE_COLLECTION,
                    rkey=rkey,
                    value=models.AppBskyFeedThreadgate.Record(
                        post=uri, allow=_allow_rules(gates), created_at=created_at
                    ),
                )
            )
        if gates.postgate:
            writes.append(
                Create(
                    collection=POSTGATE_COLLECTION,
                    rkey=rkey,
                    value=models.AppBskyFeedPostgate.Record(
                        post=uri,
                        created_at=created_at,
                        embedding_rules=[models.AppBskyFeedPostgate.DisableRule()],
                    ),
                )
            )
        data = models.ComAtprotoRepoApplyWrites.Data(repo=did, writes=writes)
        response = self._call(lambda c: c.com.atproto.repo.apply_writes(data), "publish a post")
        for result in response.results or ():
            if getattr(result, "uri", None) == uri:
                return PublishedRef(uri=uri, cid=result.cid, rkey=rkey)
        # An older server answers without results: read the post back for its cid.
        found = self.lookup(rkey)
        if found is None:
            raise ChannelError(f"Bluesky accepted post {rkey} but does not show it")
        return PublishedRef(uri=found.uri, cid=found.cid, rkey=rkey)

    def _embed(self, post: BlueskyPost) -> Any:
        if post.video is not None:
            video = post.video
            if self.video.mode == "service":
                blob = self._upload_to_video_service(Path(video.path))
            else:
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
        # Streamed from disk in pieces (a video may be 100 MB); a fresh stream per try, since a
        # retry after a new login must send the file again from its start.
        size = path.stat().st_size
        headers = {"Content-Type": mime, "Content-Length": str(size)}
        response = self._call(
            lambda c: c.com.atproto.repo.upload_blob(
                None, content=_read_chunks(path), headers=headers
            ),
            f"upload {path.name}",
        )
        return response.blob

    def _upload_to_video_service(self, path: Path) -> Any:
        if self._video_service is None:
            did = self._ensure_login()
            server = self._call(
                lambda c: c.com.atproto.server.describe_server(), "describe the server"
            )
            self._video_service = VideoService(
                self.video.service_url,
                did=did,
                pds_did=server.did,
                service_auth=self._service_auth,
                transport=self._transport,
                poll=self.video.poll,
            )
        blob = self._video_service.upload(path, path.name)
        return BlobRef.model_validate(blob)

    def _service_auth(self, aud: str, lxm: str) -> str:
        """A token from the account's server for one method of another service (30 minutes)."""
        params = models.ComAtprotoServerGetServiceAuth.Params(
            aud=aud, lxm=lxm, exp=int(time.time()) + 1800
        )
        return self._call(
            lambda c: c.com.atproto.server.get_service_auth(params), "get a service token"
        ).token

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
        self.requests += 1
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _post_view(post: Any) -> dict[str, Any]:
    record = post.record
    return {
        "uri": post.uri,
        "cid": post.cid,
        "author": post.author.handle,
        "author_did": post.author.did,
        "text": getattr(record, "text", "") or "",
        "at": post.indexed_at,
        "likes": post.like_count or 0,
    }


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(UPLOAD_CHUNK):
            yield chunk


def _allow_rules(gates: Gates) -> list[Any]:
    """The threadgate's allow list; empty means nobody may reply."""
    tg = models.AppBskyFeedThreadgate
    rules: list[Any] = []
    for rule in gates.replies:
        if rule == "followers":
            rules.append(tg.FollowerRule())
        elif rule == "following":
            rules.append(tg.FollowingRule())
        elif rule == "mentioned":
            rules.append(tg.MentionRule())
        elif rule == "lists":
            rules.extend(tg.ListRule(list=uri) for uri in gates.lists)
    return rules


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
