"""The editors' review app (Starlette, server-rendered Jinja2 templates from `templates/web/`)."""

from __future__ import annotations

from narratives.web.app import create_app

__all__ = ["create_app"]
