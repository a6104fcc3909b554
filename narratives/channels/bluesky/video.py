"""Bluesky's video service (`app.bsky.video`): how accounts hosted by Bluesky should send video.

The flow, from the lexicons and the way Bluesky's own app uses them:

1. `app.bsky.video.getUploadLimits` on the video service, with a service-auth token for that
   method (`com.atproto.server.getServiceAuth` on the account's PDS, audience the service's
   DID): may this account upload now, and how much is left of its daily allowance?
2. `app.bsky.video.uploadVideo` with the MP4 as the body (streamed from disk) and a token whose
   audience is the account's PDS and whose method is `com.atproto.repo.uploadBlob`: the
   service processes the video, then stores it on the PDS as the account would.
3. `app.bsky.video.getJobStatus` until the job is `JOB_STATE_COMPLETED` (it carries the blob to
   embed) or `JOB_STATE_FAILED` (its `failureCode` says why).

A self-hosted PDS has no such service: its channel keeps the direct `uploadBlob`
(`video_upload = "direct"` in the campaign's [channels.bluesky]). SDK-free apart from the
tokens, which the channel fetches through the SDK and hands in as `service_auth`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from narratives.core.errors import (
    PermanentChannelError,
    RateLimited,
    TransientChannelError,
)

__all__ = ["FAILURES", "VideoService", "service_did"]

#: app.bsky.video.defs#jobStatus failureCode -> what it means for the editor.
FAILURES = {
    "validation_failure": (
        "the video service refused the file (not a valid video, too long or too large)",
        "check the video's length and size against the campaign's video_limits",
    ),
    "encoding_failure": (
        "the video service could not re-encode the video",
        'render the video again, or upload it directly (video_upload = "direct")',
    ),
    "pds_upload_failure": (
        "the video service could not store the video on the account's server",
        "try again later",
    ),
    "pds_upload_unsupported_blob_size": (
        "the account's server does not take a video this large",
        "lower video_limits.max_bytes for the campaign, or render a shorter excerpt",
    ),
    "generic_failure": ("the video service failed to process the video", "try again later"),
}
#: Failure codes worth trying again (the rest will fail the same way).
_TRANSIENT = {"pds_upload_failure", "generic_failure"}
_DONE, _FAILED = "JOB_STATE_COMPLETED", "JOB_STATE_FAILED"
_CHUNK = 1 << 20


def service_did(url: str) -> str:
    """The did:web of a service at `url` (a port is written %3A, as did:web requires)."""
    host = urlsplit(url).netloc or url
    return "did:web:" + host.replace(":", "%3A")


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _until_utc_midnight(now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


class VideoService:
    """One account's client of the video service at `url`.

    `service_auth(aud, lxm)` returns a short-lived token from the account's PDS; `pds_did` is
    the PDS's DID (the audience of the upload token). `poll` is seconds between job checks,
    `timeout` the longest wait for a job.
    """

    def __init__(
        self,
        url: str,
        *,
        did: str,
        pds_did: str,
        service_auth: Callable[[str, str], str],
        transport: httpx.BaseTransport | None = None,
        poll: float = 1.0,
        timeout: float = 600.0,
        request_timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.did = did
        self.pds_did = pds_did
        self._auth = service_auth
        self._poll = poll
        self._timeout = timeout
        self._http = httpx.Client(transport=transport, timeout=request_timeout)

    def close(self) -> None:
        self._http.close()

    # -- the three methods ------------------------------------------------------------------

    def upload_limits(self) -> dict[str, Any]:
        token = self._auth(service_did(self.url), "app.bsky.video.getUploadLimits")
        return self._json(
            self._send("GET", "app.bsky.video.getUploadLimits", token=token),
            "ask the video service for the upload limits",
        )

    def upload(self, path: Path, name: str) -> dict[str, Any]:
        """Upload the MP4 at `path`; returns the blob (as JSON) once the job is done."""
        limits = self.upload_limits()
        if not limits.get("canUpload", False):
            detail = limits.get("message") or limits.get("error") or "no reason given"
            left = limits.get("remainingDailyVideos")
            raise RateLimited(
                f"Bluesky's daily video limit is reached for this account ({detail}"
                + (f"; {left} videos left today" if left is not None else "")
                + ")",
                retry_after=_until_utc_midnight(),
                hint="the video goes out once the allowance renews; nothing to do",
            )
        size = path.stat().st_size
        left_bytes = limits.get("remainingDailyBytes")
        if left_bytes is not None and size > left_bytes:
            raise RateLimited(
                f"the video is {size} bytes but only {left_bytes} of today's video allowance "
                "are left",
                retry_after=_until_utc_midnight(),
                hint="the video goes out once the allowance renews",
            )
        token = self._auth(self.pds_did, "com.atproto.repo.uploadBlob")
        response = self._send(
            "POST",
            "app.bsky.video.uploadVideo",
            token=token,
            params={"did": self.did, "name": name},
            content=_chunks(path),
            headers={"Content-Type": "video/mp4", "Content-Length": str(size)},
        )
        if response.status_code == 409:
            # The same video was uploaded before (a retry): its job is named in the answer.
            body = self._body(response)
            job_id = body.get("jobId") or (body.get("jobStatus") or {}).get("jobId")
            if not job_id:
                raise TransientChannelError("the video service says the video exists already")
            return self._wait(job_id)
        status = self._json(response, "upload the video to the video service")["jobStatus"]
        return self._finished(status) or self._wait(status["jobId"])

    def job_status(self, job_id: str) -> dict[str, Any]:
        response = self._send("GET", "app.bsky.video.getJobStatus", params={"jobId": job_id})
        return self._json(response, "ask the video service about the upload")["jobStatus"]

    # -- helpers ----------------------------------------------------------------------------

    def _wait(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        while True:
            blob = self._finished(self.job_status(job_id))
            if blob is not None:
                return blob
            if time.monotonic() >= deadline:
                raise TransientChannelError(
                    f"the video service is still processing the video after {self._timeout:.0f} s"
                    f" (job {job_id})"
                )
            time.sleep(self._poll)

    @staticmethod
    def _finished(status: dict[str, Any]) -> dict[str, Any] | None:
        state = status.get("state")
        if state == _DONE:
            if not status.get("blob"):
                raise TransientChannelError("the video service finished without a video")
            return status["blob"]
        if state == _FAILED:
            code = status.get("failureCode") or "generic_failure"
            what, hint = FAILURES.get(code, FAILURES["generic_failure"])
            detail = status.get("message") or status.get("error") or code
            message = f"{what} ({code}: {detail})"
            if code in _TRANSIENT:
                raise TransientChannelError(message, hint=hint)
            raise PermanentChannelError(message, hint=hint)
        return None

    def _send(self, method: str, nsid: str, *, token: str | None = None, **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self._http.request(method, f"{self.url}/xrpc/{nsid}", headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise TransientChannelError(
                f"cannot reach Bluesky's video service at {self.url}: {type(exc).__name__} {exc}"
            ) from exc

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _json(self, response: httpx.Response, action: str) -> dict[str, Any]:
        if response.is_success:
            return self._body(response)
        body = self._body(response)
        detail = body.get("message") or body.get("error") or response.reason_phrase
        status = response.status_code
        if status == 429:
            reset = response.headers.get("ratelimit-reset")
            delay = max(float(reset) - time.time(), 0.0) if reset else None
            raise RateLimited(
                f"the video service's rate limit was reached while trying to {action}",
                retry_after=delay,
            )
        if status >= 500 or status == 408:
            raise TransientChannelError(f"the video service failed to {action} ({detail})")
        if status == 401:
            raise PermanentChannelError(
                f"the video service refused the account's token while trying to {action} "
                f"({detail})",
                hint="check the account's app password with `narrative accounts check`",
            )
        raise PermanentChannelError(f"the video service refused to {action} ({detail})")
