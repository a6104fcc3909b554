"""What keeps the review app private: the session secret, the login gate, CSRF tokens,
the failed-login limit and the security headers on every response.

The gate is middleware rather than a decorator so that a route added later is private by
default; only the login page and the two static assets (no narrative data) are public.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from narratives.core.workspace import Workspace
from narratives.store.context import Context
from narratives.store.users import User, get_user_by_id

__all__ = [
    "SECRET_FILE",
    "session_secret",
    "csrf_token",
    "csrf_ok",
    "LoginLimiter",
    "AuthGate",
    "SecurityHeaders",
    "current_user",
    "PUBLIC_PATHS",
]

SECRET_FILE = "web-session-secret"
PUBLIC_PATHS = ("/login", "/static/review.css", "/static/review.js")
#: The campaigns' public feeds and the media they enclose (narratives.web.public).
PUBLIC_PREFIX = "/feeds/"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def session_secret(workspace: Workspace) -> str:
    """The signing key for session cookies: made once, kept in the state folder (mode 0600)."""
    path: Path = workspace.state_dir / SECRET_FILE
    workspace.state_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        secret = path.read_text(encoding="ascii").strip()
        if len(secret) >= 32:
            return secret
        # An empty or truncated file (a crash mid-write) is replaced, not trusted.
        path.unlink()
        return session_secret(workspace)
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret + "\n")
    return secret


def csrf_token(session: dict) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: dict, submitted: object) -> bool:
    expected = session.get("csrf")
    if not expected or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


class LoginLimiter:
    """At most `limit` failed logins per (user name, client address) within `window` seconds."""

    def __init__(self, limit: int = 5, window: float = 300.0, clock=time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        now = self._clock()
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def _wait(self, q: deque[float], limit: int) -> float:
        if len(q) < limit:
            return 0.0
        return max(1.0, self.window - (self._clock() - q[0]))

    def _prune(self) -> None:
        """Forget keys whose failures are all older than the window (memory stays bounded)."""
        now = self._clock()
        stale = [k for k, q in self._failures.items() if not q or now - q[-1] > self.window]
        for key in stale:
            del self._failures[key]

    def acquire(self, name: str, address: str) -> float:
        """Reserve one attempt before the password is checked: 0 when allowed (the attempt
        counts as failed until `succeeded`), else the seconds to wait.

        Reserving first means a burst of parallel guesses cannot all slip past the check; a
        per-name limit (over every address) stops guesses spread across many addresses.
        """
        pair, everywhere = (name.lower(), address), (name.lower(), "*")
        with self._lock:
            if len(self._failures) > 1000:
                self._prune()
            now = self._clock()
            q, qn = self._recent(pair), self._recent(everywhere)
            wait = max(self._wait(q, self.limit), self._wait(qn, self.limit * 4))
            if wait:
                return wait
            q.append(now)
            qn.append(now)
            return 0.0

    def retry_after(self, name: str, address: str) -> float:
        """Seconds until another attempt is allowed (0 when it is allowed now)."""
        with self._lock:
            return max(
                self._wait(self._recent((name.lower(), address)), self.limit),
                self._wait(self._recent((name.lower(), "*")), self.limit * 4),
            )

    def failed(self, name: str, address: str) -> None:
        """Record a failure that was not reserved with `acquire`."""
        with self._lock:
            now = self._clock()
            self._recent((name.lower(), address)).append(now)
            self._recent((name.lower(), "*")).append(now)

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.pop((name.lower(), address), None)
            everywhere = self._failures.get((name.lower(), "*"))
            if everywhere:
                everywhere.pop()  # this attempt's reservation


def current_user(request: Request) -> User:
    return request.scope["state"]["user"]


class AuthGate:
    """Lets a request through only with a session of an existing, enabled user.

    Otherwise a page request is redirected to the login page and anything else (media, form
    posts) gets 401. Sits inside SessionMiddleware, so `scope["session"]` is there.
    """

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in PUBLIC_PATHS
            or scope["path"].startswith(PUBLIC_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        session = scope.get("session") or {}
        user = None
        uid = session.get("uid")
        if isinstance(uid, int):
            user = await run_in_threadpool(get_user_by_id, self.ctx, uid)
            if user is not None and (user.disabled or session.get("epoch") != user.session_epoch):
                user = None  # disabled, logged out, or the password changed since
        if user is None:
            session.pop("uid", None)
            if scope["method"] == "GET" and not scope["path"].startswith("/media/"):
                url = URL(scope=scope)
                target = url.path + (f"?{url.query}" if url.query else "")
                response = RedirectResponse(
                    URL("/login").include_query_params(next=target), status_code=303
                )
            else:
                response = PlainTextResponse("Log in first.", status_code=401)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds CSP, framing, referrer and caching headers to every response."""

    HEADERS = [
        (b"content-security-policy", CSP.encode()),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.HEADERS if k not in present]
                if b"cache-control" not in present:
                    # Stories are private: no copies in shared or browser caches.
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette's own 500 page is sent from outside this middleware, without these
            # headers; answer here instead, then let the error reach the server's log.
            if not started:
                body = b"Something went wrong on the server. The error has been logged."
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send_with_headers({"type": "http.response.body", "body": body})
            raise
