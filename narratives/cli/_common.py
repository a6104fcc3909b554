"""Helpers shared by the command modules."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import sqlalchemy as sa
from rich.console import Console
from rich.markup import escape

from narratives.core.errors import NotFound, UsageError
from narratives.store.context import Context
from narratives.store.schema import narratives
from narratives.store.stage_runs import done_narratives

__all__ = [
    "get_context",
    "note_stale_defaults",
    "read_only",
    "echo_json",
    "console",
    "err_console",
    "resolve_narrative_id",
    "narrative_ids",
    "shown_name",
    "actor_option",
    "require_actor",
    "confirm_or_yes",
]

#: `--as USER` on every command that changes something: the name in the audit log.
actor_option = click.option(
    "--as",
    "actor",
    envvar="NARRATIVES_USER",
    metavar="USER",
    help="Who is acting, for the audit log (default: $NARRATIVES_USER).",
)


def require_actor(actor: str | None) -> str:
    if not actor:
        raise UsageError("who is acting?", hint="pass --as USER or set NARRATIVES_USER")
    return actor


console = Console()
err_console = Console(stderr=True)


log = logging.getLogger(__name__)

_READ_ONLY = "narratives.read_only"
_F = TypeVar("_F", bound=Callable[..., Any])


def read_only(command: _F) -> _F:
    """Marks a command that only reads (put it just above `def`): its context makes no folders
    and no database, so looking at a workspace never changes it."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        click.get_current_context().meta[_READ_ONLY] = True
        return command(*args, **kwargs)

    return run  # type: ignore[return-value]


def get_context() -> Context:
    """The workspace context (`--workspace`, else NARRATIVES_HOME, else here), made once per
    command invocation; a folder `narrative init` did not make is refused (exit 2)."""
    ctx = click.get_current_context()
    ctx.ensure_object(dict)
    root = ctx.find_root()
    root.ensure_object(dict)
    if "context" not in root.obj:
        root.obj["context"] = Context.current(
            root.obj.get("workspace"), read_only=ctx.meta.get(_READ_ONLY, False)
        )
        log.info("workspace %s", root.obj["context"].workspace.root)
    return root.obj["context"]


def _default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def echo_json(obj: Any) -> None:
    """One JSON document per line on stdout (JSON Lines), flushed so pipes see it at once."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=_default) + "\n")
    sys.stdout.flush()


def _match(conn: sa.Connection, prefix: str) -> str:
    prefix = prefix.lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise UsageError(f"{prefix!r} is not a narrative id (hex digits)")
    rows = conn.execute(
        sa.select(narratives.c.id).where(narratives.c.id.like(f"{prefix}%")).limit(2)
    ).all()
    if not rows:
        raise NotFound(f"no narrative with id {prefix}", hint="see `narrative status`")
    if len(rows) > 1:
        raise UsageError(f"id prefix {prefix} is ambiguous: give more characters")
    return rows[0][0]


def resolve_narrative_id(prefix: str) -> str:
    """The full narrative id for a unique prefix (as `narrative status` shows)."""
    with get_context().db.connect() as conn:
        return _match(conn, prefix)


def narrative_ids(ids: tuple[str, ...], all_: bool, *, done: str | None = None) -> list[str]:
    """Full ids for the prefixes given, or with `all_` every narrative (every one whose stage
    `done` has finished, when given: `--all` means all that are ready for the command)."""
    if all_ == bool(ids):
        raise UsageError("name narratives by id, or pass --all (not both)")
    with get_context().db.connect() as conn:
        if not all_:
            return [_match(conn, given) for given in ids]
        if done:
            return sorted(done_narratives(conn, done))
        return sorted(r[0] for r in conn.execute(sa.select(narratives.c.id)))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown_name(name: str) -> str:
    """A file name as one line of Rich text: markup escaped, and a newline or other control
    character (legal in Unix names) shown as ⏎/� instead of breaking the table row."""
    return escape(_CONTROL.sub(lambda m: "⏎" if m.group() == "\n" else "\ufffd", name))


def confirm_or_yes(question: str) -> None:
    """Ask on the terminal; "no" aborts. Without a terminal to ask on, a usage error that
    names --yes, not Click's bare "Aborted!"."""
    try:
        agreed = click.confirm(question)
    except click.Abort:
        if sys.stdin is not None and sys.stdin.isatty():
            raise  # Ctrl-C or Ctrl-D at the prompt: the user chose to stop
        raise UsageError(
            "no answer to the confirmation: standard input is not a terminal",
            hint="pass --yes to go ahead without asking",
        ) from None
    if not agreed:
        raise click.Abort()


def note_stale_defaults(ctx) -> None:
    """Say so when stories are about to be routed with an earlier version's examples or
    thresholds (a workspace `init` made before an upgrade keeps them)."""
    from narratives.core.campaigns import load_campaigns
    from narratives.core.errors import NarrativesError
    from narratives.workflow.upgrade import stale_defaults

    try:
        remarks = stale_defaults(ctx.workspace, load_campaigns(ctx.workspace))
    except (NarrativesError, OSError, ValueError):
        return  # a note only: the stages report a campaign or examples file that does not load
    for remark in remarks:
        err_console.print(f"Note: {remark}", highlight=False, soft_wrap=True)
