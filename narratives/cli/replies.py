"""`narrative replies`: the replies and quotes published stories received, and the answers."""

from __future__ import annotations

import click

from narratives.cli._common import actor_option, console, echo_json, get_context, require_actor


@click.group("replies", invoke_without_command=True)
@click.option("--campaign", metavar="SLUG", help="Only this campaign's stories.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per story.")
@click.pass_context
def replies_group(click_ctx: click.Context, campaign: str | None, as_json: bool) -> None:
    """Replies and quote posts of published stories; hide a reply or detach a quote.

    Without a subcommand, lists them (read from Bluesky now).
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from narratives.workflow import replies

    stories = replies.replies(get_context(), campaign=campaign)
    for s in stories:
        if as_json:
            echo_json(s.to_dict())
            continue
        console.print(f"[bold]draft {s.draft_id}[/] {s.uri}", highlight=False)
        for r in s.replies:
            mark = " (hidden)" if r["uri"] in s.hidden else ""
            console.print(
                f"  reply {r['author']}{mark}: {r['text']}\n    {r['uri']}", highlight=False
            )
        for q in s.quotes:
            mark = " (detached)" if q["uri"] in s.detached else ""
            console.print(
                f"  quote {q['author']}{mark}: {q['text']}\n    {q['uri']}", highlight=False
            )
        if not s.replies and not s.quotes:
            console.print("  no replies or quotes")
    if not stories and not as_json:
        console.print("No published Bluesky stories.")


@replies_group.command("hide")
@click.argument("story_uri")
@click.argument("reply_uri")
@actor_option
def hide_cmd(story_uri: str, reply_uri: str, actor) -> None:
    """Hide REPLY_URI under the story whose first post is STORY_URI (audited)."""
    from narratives.workflow import replies

    done = replies.hide_reply(get_context(), story_uri, reply_uri, actor=require_actor(actor))
    console.print("Hidden." if done else "It was hidden already.")


@replies_group.command("detach")
@click.argument("story_uri")
@click.argument("quote_uri")
@actor_option
def detach_cmd(story_uri: str, quote_uri: str, actor) -> None:
    """Detach the quote post QUOTE_URI from the story whose first post is STORY_URI (audited)."""
    from narratives.workflow import replies

    done = replies.detach_quote(get_context(), story_uri, quote_uri, actor=require_actor(actor))
    console.print("Detached." if done else "It was detached already.")


def register(cli: click.Group) -> None:
    cli.add_command(replies_group)
