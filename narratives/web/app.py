"""The review app: a queue of drafts and one page per draft, server-rendered.

Everything works without JavaScript except media playback; the one script (a static file,
so the CSP can forbid inline scripts) adds a live grapheme counter and click-to-seek.
Pages are plain `def` functions run in the thread pool, because the database calls block.
This module wires the views (`narratives.web.views`) to routes, with the CSRF check on every
POST, the error pages and the middleware (security headers, session, login gate).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from narratives.core.errors import NarrativesError
from narratives.store.context import Context
from narratives.web.jobs import OutputJobs
from narratives.web.public import routes as public_routes
from narratives.web.security import (
    AuthGate,
    LoginLimiter,
    SecurityHeaders,
    csrf_ok,
    secure_cookies,
    session_secret,
)
from narratives.web.templating import environment
from narratives.web.views import VIEWS
from narratives.web.views.base import Endpoint, Site, error_page

__all__ = ["create_app", "SESSION_COOKIE", "SESSION_MAX_AGE"]

SESSION_COOKIE = "narratives_session"
SESSION_MAX_AGE = 12 * 60 * 60


class _IdConvertor(Convertor[int]):
    """A database id in a path: digits that fit a 64-bit integer, so a longer one is a 404
    rather than an OverflowError (a 500) in the database driver."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", _IdConvertor())


def create_app(ctx: Context, *, limiter: LoginLimiter | None = None) -> Starlette:
    """The review app for a workspace; every route but the login page and static assets
    needs a logged-in user."""
    site = Site(ctx, environment(ctx), limiter or LoginLimiter(ctx), OutputJobs(ctx))
    routes = [_route(site, e) for view in VIEWS for e in view(site).endpoints()]
    # Public: feeds and their enclosures only (no login; see narratives.web.public).
    routes += public_routes

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, NarrativesError):
            return error_page(site.env, request, exc.http_status, str(exc), exc.hint)
        assert isinstance(exc, HTTPException)
        messages = {404: "There is no page here.", 405: "That action is not available here."}
        return error_page(
            site.env, request, exc.status_code, messages.get(exc.status_code, str(exc.detail))
        )

    app = Starlette(
        routes=routes,
        middleware=_middleware(ctx),
        exception_handlers={NarrativesError: on_error, HTTPException: on_error},
    )
    app.state.workspace = ctx.workspace
    # The background jobs that make videos and drafts after an assignment (tests wait on it).
    app.state.output_jobs = site.jobs
    return app


def _route(site: Site, endpoint: Endpoint) -> Route:
    fn = endpoint.handler
    if endpoint.kind == "direct":
        handler = fn
    elif endpoint.kind == "page":

        async def handler(request: Request) -> Response:
            return await run_in_threadpool(fn, request)

    else:
        # Every POST goes through here: the CSRF check cannot be forgotten on a new form.
        async def handler(request: Request) -> Response:
            form = await request.form()
            if not csrf_ok(request.session, form.get("csrf")):
                return error_page(
                    site.env,
                    request,
                    403,
                    "The form's security token is missing or wrong.",
                    "Reload the page and try again.",
                )
            return await run_in_threadpool(fn, request, form)

    return Route(endpoint.path, handler, methods=[endpoint.method])


def _middleware(ctx: Context) -> list[Middleware]:
    return [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=session_secret(ctx.workspace),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            same_site="lax",
            https_only=secure_cookies(ctx.settings),
        ),
        Middleware(AuthGate, ctx=ctx),
    ]
