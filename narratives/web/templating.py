"""The pages' Jinja environment: where templates are found, the sandbox, and the filters that
turn stored values into what editors read (state and channel names, times, scores)."""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from narratives.core.campaigns import CHANNELS
from narratives.records.delivery import DeliveryState
from narratives.records.draft import DraftState
from narratives.store.context import Context

__all__ = ["DELIVERY_LABELS", "STATE_LABELS", "environment", "template_dirs"]

#: The review pages and their two static assets, shipped inside the package.
SHIPPED_TEMPLATES = Path(__file__).resolve().parent / "templates"

STATE_LABELS = {
    DraftState.PENDING_REVIEW: "Pending review",
    DraftState.APPROVED: "Approved",
    DraftState.REJECTED: "Rejected",
    DraftState.CHANGES_REQUESTED: "Changes requested",
}
DELIVERY_LABELS = {
    DeliveryState.SCHEDULED: "Scheduled",
    DeliveryState.PUBLISHING: "Publishing",
    DeliveryState.PUBLISHED: "Published",
    DeliveryState.FAILED: "Failed",
    DeliveryState.MISSED: "Missed",
    DeliveryState.CANCELLED: "Cancelled",
    DeliveryState.WITHDRAWING: "Being taken down",
    DeliveryState.WITHDRAWN: "Withdrawn",
}


def template_dirs(ctx: Context) -> list[Path]:
    # The workspace's own copy wins, so organisations can restyle; the shipped one is the fallback.
    dirs = [ctx.workspace.templates_dir / "web", SHIPPED_TEMPLATES]
    return [d for d in dirs if d.is_dir()]


def environment(ctx: Context) -> jinja2.Environment:
    # Sandboxed: a workspace may override these templates, and a template must not be a way
    # to run code on the server.
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(ctx)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["timestamp"] = _timestamp
    env.filters["when"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M UTC") if dt else ""
    env.filters["state_label"] = lambda s: STATE_LABELS.get(s, s)
    env.filters["delivery_label"] = lambda s: DELIVERY_LABELS.get(s, s)
    env.filters["channel_label"] = _channel_label
    # The channels in their one order, for pages that list them all (the queue's filter).
    env.globals["channel_names"] = tuple(CHANNELS)
    env.filters["score"] = lambda x: f"{x:.2f}" if isinstance(x, int | float) else "—"
    return env


def _channel_label(name: str, long: bool = False) -> str:
    """A channel as editors read it; `long` is the consent form's fuller name."""
    info = CHANNELS.get(name)
    if info is None:
        return name
    return info.long_label if long else info.label


def _timestamp(seconds: float) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 60}:{seconds % 60:02d}"
