"""A STAND-IN for Bluesky's video service, for tests only (there is no open-source one).

It implements the three `app.bsky.video` methods the client uses, from their lexicons:

- `getUploadLimits` (query, service auth for that method): `canUpload`,
  `remainingDailyVideos`, `remainingDailyBytes`, `message`;
- `uploadVideo` (procedure, body video/mp4, `?did=&name=`; the token's audience is the
  account's PDS and its method `com.atproto.repo.uploadBlob`): answers `{jobStatus}` at once
  and processes in the background, then stores the video on the real PDS with that token,
  as the real service does;
- `getJobStatus` (query, `?jobId=`): `{jobStatus}` with `state`, `progress`, and `blob` when
  `JOB_STATE_COMPLETED` or `failureCode`/`error`/`message` when `JOB_STATE_FAILED`.

What it does not do: re-encode, scan, or check the token's signature (it reads the claims
only). A file whose upload name is in `fail` ends in JOB_STATE_FAILED with that failure code;
`daily_videos` caps uploads per account (the "daily limit").
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx


def _claims(authorization: str | None) -> dict:
    if not authorization or not authorization.startswith("Bearer "):
        return {}
    try:
        payload = authorization.split()[1].split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


class VideoServiceStandIn:
    def __init__(
        self,
        pds_url: str,
        *,
        daily_videos: int = 25,
        daily_bytes: int = 10_000_000_000,
        fail: dict[str, str] | None = None,
        step: float = 0.05,
    ) -> None:
        self.pds_url = pds_url
        self.daily_videos = daily_videos
        self.daily_bytes = daily_bytes
        self.fail = dict(fail or {})
        self.step = step
        self.jobs: dict[str, dict] = {}
        self.uploads: dict[str, int] = {}
        self.calls: list[str] = []
        self.tokens: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def did(self) -> str:
        return "did:web:" + self.url.split("//", 1)[1].replace(":", "%3A")

    def start(self) -> VideoServiceStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the methods ---------------------------------------------------------------------------

    def _limits(self, claims: dict) -> tuple[int, dict]:
        if claims.get("aud") != self.did or claims.get("lxm") != "app.bsky.video.getUploadLimits":
            return 401, {"error": "AuthMissing", "message": "a service token for this method"}
        used = self.uploads.get(claims.get("iss", ""), 0)
        left = max(self.daily_videos - used, 0)
        body = {
            "canUpload": left > 0,
            "remainingDailyVideos": left,
            "remainingDailyBytes": self.daily_bytes,
        }
        if not left:
            body["message"] = "You have reached your daily upload limit for videos"
            body["error"] = "daily_limit"
        return 200, body

    def _upload(self, claims: dict, query: dict, body: bytes, token: str) -> tuple[int, dict]:
        did = query.get("did", [""])[0]
        if claims.get("lxm") != "com.atproto.repo.uploadBlob" or claims.get("iss") != did:
            return 401, {"error": "AuthMissing", "message": "a token for the account's uploadBlob"}
        with self._lock:
            if self.uploads.get(did, 0) >= self.daily_videos:
                return 400, {"error": "daily_limit", "message": "daily limit reached"}
            self.uploads[did] = self.uploads.get(did, 0) + 1
            job_id = secrets.token_hex(8)
            job = {"jobId": job_id, "did": did, "state": "JOB_STATE_CREATED", "progress": 0}
            self.jobs[job_id] = job
        name = query.get("name", [""])[0]
        worker = threading.Thread(target=self._process, args=(job, name, body, token), daemon=True)
        worker.start()
        return 200, {"jobStatus": dict(job)}

    def _process(self, job: dict, name: str, body: bytes, token: str) -> None:
        for state in ("JOB_STATE_ENCODING", "JOB_STATE_SCANNING", "JOB_STATE_UPLOADING"):
            time.sleep(self.step)
            with self._lock:
                job.update(state=state, progress=50)
        if name in self.fail:
            with self._lock:
                job.update(
                    state="JOB_STATE_FAILED",
                    failureCode=self.fail[name],
                    error="stand-in failure",
                    message=f"the stand-in fails {name} with {self.fail[name]}",
                )
            return
        response = httpx.post(
            f"{self.pds_url}/xrpc/com.atproto.repo.uploadBlob",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "video/mp4"},
            timeout=60,
        )
        with self._lock:
            if response.is_success:
                job.update(state="JOB_STATE_COMPLETED", progress=100, blob=response.json()["blob"])
            else:
                job.update(
                    state="JOB_STATE_FAILED",
                    failureCode="pds_upload_failure",
                    error=response.text[:200],
                )

    def _status(self, query: dict) -> tuple[int, dict]:
        job = self.jobs.get(query.get("jobId", [""])[0])
        if job is None:
            return 400, {"error": "NotFound", "message": "no such job"}
        with self._lock:
            return 200, {"jobStatus": dict(job)}

    def _handler(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return None

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                claims = _claims(self.headers.get("Authorization"))
                service.calls.append(url.path.rsplit("/", 1)[1])
                if url.path == "/xrpc/app.bsky.video.getUploadLimits":
                    service.tokens.append(claims)
                    self._answer(*service._limits(claims))
                elif url.path == "/xrpc/app.bsky.video.getJobStatus":
                    self._answer(*service._status(query))
                else:
                    self._answer(404, {"error": "MethodNotImplemented"})

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                service.calls.append(url.path.rsplit("/", 1)[1])
                if url.path != "/xrpc/app.bsky.video.uploadVideo":
                    self._answer(404, {"error": "MethodNotImplemented"})
                    return
                if self.headers.get("Content-Type") != "video/mp4":
                    self._answer(400, {"error": "InvalidMimeType", "message": "video/mp4 only"})
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                authorization = self.headers.get("Authorization") or ""
                claims = _claims(authorization)
                service.tokens.append(claims)
                token = authorization.removeprefix("Bearer ")
                self._answer(*service._upload(claims, parse_qs(url.query), body, token))

        return Handler
