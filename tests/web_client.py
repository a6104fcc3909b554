"""A logged-in test client for the review app's in-process tests (scheduling, consent)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from narratives.web import create_app
from tests.review_fixtures import PASSWORD, add_user

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
VERSION = re.compile(r'name="version" value="([^"]+)"')
#: Draft actions whose form carries the version of the text it was read from.
VERSIONED = re.compile(r"^/drafts/(\d+)/(approve|edit)$")


def client_for(ctx, *, user: str | None = "kai", role: str = "editor") -> TestClient:
    """A client for a fresh app; logged in as `user` (added with `role`) unless None."""
    client = TestClient(create_app(ctx), follow_redirects=False)
    if user is not None:
        add_user(ctx, user, role=role)
        login(client, user)
    return client


def csrf(client: TestClient, path: str = "/login") -> str:
    return CSRF.search(client.get(path).text).group(1)


def login(client: TestClient, name: str = "kai") -> None:
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf(client)})
    assert r.status_code == 303, r.text


def post(client: TestClient, path: str, data=None, *, page: str = "/"):
    """POST a form as a browser would: with the session's CSRF token (read from `page`) and,
    for an approval or edit, the text version from the draft's page."""
    data = {**(data or {}), "csrf": csrf(client, page)}
    m = VERSIONED.match(path)
    if m and "version" not in data:
        data["version"] = VERSION.search(client.get(f"/drafts/{m.group(1)}").text).group(1)
    return client.post(path, data=data)


def flash(client: TestClient, path: str) -> str:
    m = re.search(r'<p class="flash" role="status">(.*?)</p>', client.get(path).text, re.S)
    return m.group(1) if m else ""


def row(html: str, element_id: str) -> str:
    """The HTML of the table row with this id."""
    m = re.search(rf'<tr[^>]*id="{element_id}"[^>]*>(.*?)</tr>', html, re.S)
    assert m, f"no row {element_id}"
    return m.group(1)
