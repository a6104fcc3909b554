"""What keeps the review app private: the session secret, the login gate, CSRF tokens,
the failed-login limit (kept in the database) and the security headers on every response.

The gate is middleware rather than a decorator so that a route added later is private by
default; only the login page and the two static assets (no narrative data) are public.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from narratives.core.clock import utcnow
from narratives.core.config import Settings
from narratives.core.workspace import Workspace
from narratives.store import login_attempts
from narratives.store.context import Context
from narratives.store.users import User, get_user_by_id

__all__ = [
    "SECRET_FILE",
    "session_secret",
    "csrf_token",
    "csrf_ok",
    "Attempt",
    "LoginLimiter",
    "secure_cookies",
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


def secure_cookies(settings: Settings) -> bool:
    """Mark the session cookie `Secure` when asked, and always when the site's base URL is
    https: a cookie sent once over plain http can be read on the way."""
    base = settings.serve.base_url.strip().lower()
    return settings.serve.secure_cookies or base.startswith("https://")


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


@dataclass(frozen=True)
class Attempt:
    """What the limiter says about one login attempt."""

    #: Seconds to wait before trying again (the attempt is refused), or 0.
    wait: float
    #: Seconds to hold the attempt before checking the password (a name under attack from
    #: many addresses is slowed, never locked: the right password still gets in).
    delay: float = 0.0
    #: The reservation to forget on success.
    attempt_id: int | None = None


class LoginLimiter:
    """Failed logins counted in the database (`login_failures`), so a restart keeps them.

    Three rules over a sliding `window`:

    - one name from one address: at most `limit` failures, then that pair waits;
    - one address, any names (password spraying): at most `address_limit`, then it waits;
    - one name from many addresses: never refused, since that would lock the real user out
      wherever they are; from `name_soft` failures on, each attempt on the name is held
      `delay_step` seconds more (at most `max_delay`) before its password is checked.

    An attempt is reserved before its password is checked, so a parallel burst cannot slip
    past the count; a success forgets the failures of that name from that address.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        limit: int = 5,
        address_limit: int = 20,
        name_soft: int = 10,
        delay_step: float = 0.5,
        max_delay: float = 5.0,
        window: float = 300.0,
        clock=utcnow,
    ) -> None:
        self.db = ctx.db
        self.limit = limit
        self.address_limit = address_limit
        self.name_soft = name_soft
        self.delay_step = delay_step
        self.max_delay = max_delay
        self.window = timedelta(seconds=window)
        self._clock = clock
        self._calls = 0

    def _wait(self, now: datetime, oldest: datetime | None) -> float:
        if oldest is None:
            return 1.0
        return max(1.0, (oldest + self.window - now).total_seconds())

    def acquire(self, name: str, address: str) -> Attempt:
        """Reserve one attempt before the password is checked (it counts as failed until
        `succeeded`); `wait` > 0 when it is refused."""
        name, address = name.lower()[:64], address[:64]
        now = self._clock()
        self._calls += 1
        if self._calls % 100 == 1:
            login_attempts.prune(self.db, now - self.window)
        attempt, counts = login_attempts.reserve(self.db, name, address, now, now - self.window)
        waits = []
        if counts.pair > self.limit:
            waits.append(self._wait(now, counts.pair_oldest))
        if counts.address > self.address_limit:
            waits.append(self._wait(now, counts.address_oldest))
        if waits:
            login_attempts.release(self.db, attempt)
            return Attempt(wait=max(waits))
        over = counts.name - self.name_soft
        delay = min(self.max_delay, self.delay_step * over) if over > 0 else 0.0
        return Attempt(wait=0.0, delay=delay, attempt_id=attempt)

    def succeeded(self, name: str, address: str) -> None:
        login_attempts.forget_success(self.db, name.lower()[:64], address[:64])


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
            if user is not None and (
                user.disabled
                or session.get("epoch") != user.session_epoch
                or session.get("name") != user.name
            ):
                # Disabled, logged out, the password changed since, or removed (and the id
                # reused by someone else).
                user = None
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
