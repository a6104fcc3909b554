"""`narrative drafts ...`: the review workflow from a terminal, with the web page's rules.

Actions need an actor: `--as NAME` or the NARRATIVES_USER environment variable, naming an
enabled user (`narrative users add`). Errors exit with the codes in `narratives.core.errors`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from narratives.channels.bluesky.text import MAX_GRAPHEMES as BLUESKY_LIMIT
from narratives.channels.bluesky.text import count_graphemes
from narratives.cli._common import (
    actor_option,
    console,
    echo_json,
    get_context,
    read_only,
    require_actor,
)
from narratives.core.campaigns import BLUESKY, CHANNELS
from narratives.core.errors import UsageError
from narratives.records.draft import STATES, Draft
from narratives.workflow import review

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _safe(text: str) -> str:
    """Text from the web (posts, comments, file names) without terminal control characters:
    an escape sequence in a comment must not drive another editor's terminal."""
    return _CONTROLS.sub("\ufffd", text)


def _json(d: Draft, ctx=None, *, full: bool = False) -> dict:
    data = d.to_dict()
    data["version"] = d.version
    if not full:
        data.pop("generated")
    else:
        data["comments"] = [c.__dict__ for c in review.list_comments(ctx, d.id)]
        data["history"] = review.history(ctx, d.id)
        data["problems"] = review.problems(d)
    return data


def _state(d: Draft) -> str:
    """The state as a person reads it: a withdrawn story's draft never goes out, whatever
    its review state says."""
    return f"withdrawn (was {d.state})" if d.withdrawn else d.state


@click.group()
def drafts() -> None:
    """Drafts of posts and feed items, and their review."""


@drafts.command("list")
@click.option("--campaign", help="Only this campaign (slug).")
@click.option("--channel", type=click.Choice(list(CHANNELS)), help="Only this channel.")
@click.option("--state", type=click.Choice(STATES), help="Only drafts in this state.")
@click.option("--tag", help="Only narratives with this tag.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@read_only
def list_(campaign, channel, state, tag, as_json: bool) -> None:
    """List drafts, oldest first."""
    found = review.list_drafts(
        get_context(), campaign=campaign, channel=channel, state=state, tag=tag
    )
    if as_json:
        for d in found:
            echo_json(_json(d))
        return
    if not found:
        click.echo("No drafts.")
        return
    table = Table("id", "state", "campaign", "channel", "title", "updated", box=None)
    for d in found:
        table.add_row(
            str(d.id),
            _state(d),
            d.campaign,
            d.channel,
            # Plain Text, not markup: a file named "[/].wav" is a title, not a tag.
            Text(_safe(d.title or "")[:48] + (" (edited)" if d.edited else "")),
            d.updated_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@drafts.command()
@click.argument("draft_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The draft, comments and history as JSON.")
@read_only
def show(draft_id: int, as_json: bool) -> None:
    """Show a draft as it would go out, with comments and history."""
    ctx = get_context()
    d = review.get_draft(ctx, draft_id)
    if as_json:
        echo_json(_json(d, ctx, full=True))
        return
    click.secho(f"Draft {d.id}: {_safe(d.title)}", bold=True)
    click.echo(
        f"{d.campaign} / {d.channel} · {_state(d)}{' · edited' if d.edited else ''} · "
        f"narrative {d.narrative_id[:12]} · template {d.template} · version {d.version}"
    )
    click.echo()
    if d.channel == BLUESKY:
        if d.content.get("content_warning"):
            click.echo(f"[content note: {_safe(d.content['content_warning'])}]")
        for i, text in enumerate(d.posts, 1):
            n = count_graphemes(text)
            flag = click.style(" OVER LIMIT", fg="red") if n > BLUESKY_LIMIT else ""
            click.secho(f"── post {i}/{len(d.posts)} ({n}/{BLUESKY_LIMIT}){flag}", dim=True)
            click.echo(_safe(text))
        click.secho(f"── video: {d.content.get('video') or 'none'}", dim=True)
    else:
        click.echo(_safe(review.content_to_text(d).rstrip()))
    for p in review.problems(d):
        click.secho(f"Cannot be approved: {p}", fg="red")
    comments = review.list_comments(ctx, d.id)
    if comments:
        click.echo()
        click.secho("Comments", bold=True)
        for c in comments:
            click.echo(f"  {c.created_at:%Y-%m-%d %H:%M} {c.author}: {_safe(c.body)}")
    click.echo()
    click.secho("History", bold=True)
    for h in review.history(ctx, d.id, related=True):
        before = (h.get("before") or {}).get("state") if isinstance(h.get("before"), dict) else None
        after = (h.get("after") or {}).get("state") if isinstance(h.get("after"), dict) else None
        change = f" {before} → {after}" if after and before != after else ""
        detail = f" ({_safe(h['detail'])})" if h.get("detail") else ""
        kind = h.get("object_type", "draft")
        scope = "" if kind == "draft" else f"[{kind} {str(h['object_id'])[:12]}] "
        click.echo(f"  {h['at']:%Y-%m-%d %H:%M} {h['actor']}: {scope}{h['action']}{change}{detail}")


@drafts.command()
@click.argument("draft_id", type=int)
@click.option("--text", help="The new text (posts or parts separated by lines of ---).")
@click.option(
    "--file",
    "file_",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Read the new text from a file ('-' for standard input).",
)
@click.option(
    "--seen",
    metavar="VERSION",
    help="Save only if the text is still this version (from `drafts show`).",
)
@actor_option
def edit(
    draft_id: int, text: str | None, file_: Path | None, seen: str | None, actor: str | None
) -> None:
    """Edit the text in $EDITOR (or from --text/--file); sends the draft back to review.

    Bluesky drafts are their posts separated by lines of `---`; RSS drafts are title,
    summary and content separated the same way.
    """
    actor = require_actor(actor)
    ctx = get_context()
    if text is not None and file_ is not None:
        raise UsageError("give --text or --file, not both")
    if file_ is not None:
        text = click.get_text_stream("stdin").read() if str(file_) == "-" else file_.read_text()
    before = review.get_draft(ctx, draft_id)
    if text is None:
        text = click.edit(review.content_to_text(before), extension=".txt")
        if text is None:
            click.echo("No changes (the editor was closed without saving).")
            return
        # Someone may have edited it while the editor was open: do not overwrite them.
        seen = seen or before.version
    after = review.edit_text(ctx, draft_id, text, actor=actor, seen=seen)
    if after.content == before.content:
        click.echo("No changes.")
        return
    click.echo(f"Draft {draft_id} saved; it is {after.state.replace('_', ' ')}.")
    for p in review.problems(after):
        click.secho(f"Cannot be approved yet: {p}", fg="yellow", err=True)


@drafts.command()
@click.argument("draft_id", type=int)
@click.option(
    "--seen",
    metavar="VERSION",
    help="Approve only if the text is still this version (from `drafts show`).",
)
@actor_option
def approve(draft_id: int, seen: str | None, actor: str | None) -> None:
    """Approve a draft pending review (it can then be scheduled).

    On a terminal, without --seen, the text is shown first and approved only if you say yes
    and nobody changed it meanwhile; a script passes --seen VERSION from `drafts show --json`
    (without it, the text as it is now is approved and its version printed)."""
    actor = require_actor(actor)
    ctx = get_context()
    if seen is None and sys.stdin is not None and sys.stdin.isatty():
        shown = review.get_draft(ctx, draft_id)
        where = f"{shown.campaign}, {shown.channel}"
        click.echo(f"Draft {draft_id} ({where}), version {shown.version}:")
        click.echo(review.content_to_text(shown))
        if not click.confirm("Approve this text?"):
            raise click.Abort()
        seen = shown.version
    approved = review.approve(ctx, draft_id, actor=actor, seen=seen)
    click.echo(f"Draft {draft_id} approved (version {approved.version}).")


@drafts.command()
@click.argument("draft_id", type=int)
@click.option("--reason", help="Why (shown in the audit log).")
@actor_option
def reject(draft_id: int, reason: str | None, actor: str | None) -> None:
    """Reject a draft (also withdraws an approval)."""
    review.reject(get_context(), draft_id, actor=require_actor(actor), reason=reason)
    click.echo(f"Draft {draft_id} rejected.")


@drafts.command("request-changes")
@click.argument("draft_id", type=int)
@click.option("--reason", help="What should change.")
@actor_option
def request_changes(draft_id: int, reason: str | None, actor: str | None) -> None:
    """Ask for changes before the draft can be approved."""
    review.request_changes(get_context(), draft_id, actor=require_actor(actor), reason=reason)
    click.echo(f"Changes requested on draft {draft_id}.")


@drafts.command()
@click.argument("draft_id", type=int)
@click.argument("text")
@actor_option
def comment(draft_id: int, text: str, actor: str | None) -> None:
    """Leave a comment on a draft."""
    review.comment(get_context(), draft_id, text, actor=require_actor(actor))
    click.echo(f"Comment added to draft {draft_id}.")


def register(cli: click.Group) -> None:
    cli.add_command(drafts)
