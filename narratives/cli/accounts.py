"""`narrative accounts ...`: the Bluesky accounts the campaigns post as."""

from __future__ import annotations

import click

from narratives.cli._common import actor_option, console, echo_json, get_context, require_actor
from narratives.core.errors import ChannelError

_CAMPAIGN = click.option("--campaign", metavar="SLUG", help="Only this campaign's account.")


@click.group("accounts")
def accounts_group() -> None:
    """Bluesky accounts: check, log out, retry credential failures.

    The accounts are those the campaigns' [channels.bluesky] sections name."""


@accounts_group.command("check")
@_CAMPAIGN
@click.option("--json", "as_json", is_flag=True, help="One JSON line per account.")
def check_cmd(campaign: str | None, as_json: bool) -> None:
    """Log in to each account afresh with its app password.

    A saved session keeps working for a while after its app password is revoked; a check
    whose login is refused forgets that session, so no post goes out on it. Exit status 8
    (channel error) if any account cannot log in.
    """
    from narratives.workflow import accounts

    results = accounts.check(get_context(), campaign)
    for r in results:
        if as_json:
            echo_json(r.to_dict())
        elif r.ok:
            console.print(f"[green]ok[/] {r.handle} on {r.service} ({', '.join(r.campaigns)})")
        else:
            hint = f" ({r.hint})" if r.hint else ""
            console.print(f"[red]cannot log in[/] {r.handle} on {r.service}: {r.error}{hint}")
    if not results and not as_json:
        console.print("No campaign has a Bluesky account.")
    if any(not r.ok for r in results):
        raise SystemExit(ChannelError.exit_code)


@accounts_group.command("logout")
@_CAMPAIGN
def logout_cmd(campaign: str | None) -> None:
    """End the saved sessions on the server and here; the next post logs in afresh with the
    app password. Exit status 8 (channel error) if the server did not end one (it is
    forgotten here all the same)."""
    from narratives.workflow import accounts

    results = accounts.logout(get_context(), campaign)
    for r in results:
        if r.error is None:
            console.print(f"{r.handle}: {'logged out' if r.had_session else 'no saved session'}")
        else:
            hint = f" ({r.hint})" if r.hint else ""
            console.print(
                f"[yellow]warning:[/] {r.handle}: forgotten here, but the server did not end "
                f"the session: {r.error}{hint}"
            )
    if any(r.error is not None for r in results):
        raise SystemExit(ChannelError.exit_code)


@accounts_group.command("retry")
@_CAMPAIGN
@actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the moved delivery ids as JSON.")
def retry_cmd(campaign: str | None, actor, as_json: bool) -> None:
    """Move every delivery that bad or missing credentials stopped back to now.

    Fix the app password first (`narrative accounts check` says whether it works); the
    scheduler then publishes them. Each move is audited like `narrative schedule move`.
    """
    from narratives.workflow import accounts

    moved = accounts.retry_credential_failures(get_context(), campaign, actor=require_actor(actor))
    if as_json:
        echo_json({"moved": moved})
    else:
        console.print(
            f"Moved {len(moved)} deliveries to now: {', '.join(map(str, moved))}"
            if moved
            else "No delivery was stopped by credentials."
        )


def register(cli: click.Group) -> None:
    cli.add_command(accounts_group)
