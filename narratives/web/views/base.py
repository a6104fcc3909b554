"""What every page shares: the app's state (`Site`), rendering a page's dataclass with its
template, the error page, the flash-and-redirect after an action, and reading path and form
fields.

Shaped after datasette's `views/base.py`: each page group is a `View` subclass in its own
module, holding its routes, the dataclass its template renders and the function that builds
that dataclass. The app (`narratives.web.app`) wraps the routes: a `page` runs in the thread
pool (the database calls block), an `action` is a POST whose CSRF token is checked first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from narratives.core.campaigns import Campaign, load_campaigns
from narratives.core.errors import ConfigError
from narratives.store.context import Context
from narratives.web.jobs import OutputJobs
from narratives.web.security import LoginLimiter, csrf_token

__all__ = [
    "Endpoint",
    "ErrorPage",
    "Site",
    "View",
    "campaign_map",
    "draft_id",
    "render",
    "text",
]

#: page: a GET run in the thread pool; action: a CSRF-checked POST run in the thread pool;
#: direct: an async endpoint that does its own checks (the login form).
Kind = Literal["page", "action", "direct"]

_ERROR_TITLES = {
    400: "That request was not understood",
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible right now",
    422: "Cannot use that",
    429: "Too many attempts",
}


@dataclass(frozen=True)
class Endpoint:
    """One route of a view: the app turns it into a Starlette `Route`."""

    method: str
    path: str
    handler: Callable[..., Any]
    kind: Kind


@dataclass
class Site:
    """What the views share: the workspace context, templates, login limiter, output jobs."""

    ctx: Context
    env: jinja2.Environment
    limiter: LoginLimiter
    jobs: OutputJobs


@dataclass
class ErrorPage:
    title: str
    message: str
    hint: str | None = None


def render(
    env: jinja2.Environment, request: Request, name: str, data: Any = None, status: int = 200
) -> HTMLResponse:
    """A template with the page's dataclass fields as its variables, plus what every page
    shows (the user, the CSRF token, a flash message)."""
    session = request.scope.get("session", {})
    state = request.scope.get("state") or {}
    page = {f.name: getattr(data, f.name) for f in fields(data)} if is_dataclass(data) else {}
    html = env.get_template(name).render(
        request=request,
        user=state.get("user"),
        csrf=csrf_token(session),
        flash=session.pop("flash", None),
        flash_error=session.pop("flash_error", None),
        **page,
    )
    return HTMLResponse(html, status_code=status)


def error_page(
    env: jinja2.Environment, request: Request, status: int, message: str, hint: str | None = None
) -> HTMLResponse:
    title = _ERROR_TITLES.get(status, "Something went wrong")
    return render(env, request, "error.html", ErrorPage(title, message, hint), status=status)


class View:
    """A page group: its routes, reading through the workflow, store and policy modules."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.ctx = site.ctx

    def endpoints(self) -> list[Endpoint]:
        raise NotImplementedError

    def render(self, request: Request, name: str, data: Any = None, status: int = 200):
        return render(self.site.env, request, name, data, status)

    def error_page(self, request: Request, status: int, message: str, hint: str | None = None):
        return error_page(self.site.env, request, status, message, hint)

    def campaigns(self) -> dict[str, Campaign]:
        return campaign_map(self.ctx)

    def campaign_name(self, slug: str) -> str:
        c = self.campaigns().get(slug)
        return c.name if c else slug

    def back(self, request: Request, draft_id: int, flash: str) -> RedirectResponse:
        """After an action on a draft: its page again, with a message."""
        request.session["flash"] = flash
        return RedirectResponse(f"/drafts/{draft_id}", status_code=303)


def campaign_map(ctx: Context) -> dict[str, Campaign]:
    """The workspace's campaigns by slug; none when their files do not load (the pages still
    show the drafts)."""
    try:
        return {c.slug: c for c in load_campaigns(ctx.workspace)}
    except ConfigError:
        return {}


def draft_id(request: Request) -> int:
    return int(request.path_params["draft_id"])


def text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""
