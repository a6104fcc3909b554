"""Logging in and out: the login form, the failed-login limit (`web.security.LoginLimiter`,
kept in the database), and ending a session."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from narratives.store.users import authenticate, end_sessions
from narratives.web.security import csrf_ok, csrf_token, current_user
from narratives.web.views.base import Endpoint, View

__all__ = ["LoginPage", "LoginView"]

#: User names are at most this long (users.py); longer input is cut before the limiter keys it.
_MAX_NAME = 64


@dataclass
class LoginPage:
    #: Where to go after logging in (a same-site path, or "").
    next: str
    error: str | None = None


class LoginView(View):
    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/login", self.login_form, "page"),
            Endpoint("POST", "/login", self.login, "direct"),
            Endpoint("POST", "/logout", self.logout, "action"),
        ]

    def login_form(self, request: Request) -> HTMLResponse:
        page = LoginPage(next=_safe_next(request.query_params.get("next")))
        return self.render(request, "login.html", page)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            return self.error_page(
                request, 403, "The form expired.", "Reload the login page and try again."
            )
        name = str(form.get("name") or "").strip().lower()[:_MAX_NAME]
        password = str(form.get("password") or "")
        nxt = _safe_next(str(form.get("next") or ""))
        address = request.client.host if request.client else "unknown"
        limiter = self.site.limiter
        attempt = await run_in_threadpool(limiter.acquire, name, address)
        if attempt.wait:
            response = self.error_page(
                request,
                429,
                "Too many failed logins from here.",
                f"Wait {int(attempt.wait // 60) + 1} minutes and try again.",
            )
            response.headers["Retry-After"] = str(int(attempt.wait))
            return response
        if attempt.delay:
            # A name under attack from many addresses: slowed, never locked out.
            await asyncio.sleep(attempt.delay)
        user = await run_in_threadpool(authenticate, self.ctx, name, password)
        if user is None:  # the attempt reserved above stays counted as a failure
            page = LoginPage(next=nxt, error="Wrong name or password.")
            return self.render(request, "login.html", page, status=400)
        await run_in_threadpool(limiter.succeeded, name, address)
        # A fresh session (and CSRF token) at login: no fixation of a pre-login session.
        request.session.clear()
        request.session["uid"] = user.id
        request.session["name"] = user.name
        request.session["epoch"] = user.session_epoch
        csrf_token(request.session)
        return RedirectResponse(nxt or "/", status_code=303)

    def logout(self, request: Request, form: FormData) -> Response:
        # The cookie is the whole session: end it on the server side too, so a copy of it
        # stops working.
        end_sessions(self.ctx, current_user(request).id)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)


def _safe_next(value: str | None) -> str:
    """Only same-site paths: no scheme, host or protocol-relative `//` (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return ""
    return value
