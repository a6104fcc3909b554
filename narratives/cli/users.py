"""`narrative users add|list|passwd|role|disable|enable|remove`: who may log in to the review
page. Every change is in the audit log; the last admin cannot be demoted, disabled or removed.

Anyone who can run this command can read the workspace anyway, so it needs no login;
the audit log records the local account that ran it.
"""

from __future__ import annotations

import getpass
import sys

import click
from rich.table import Table

from narratives.cli._common import console, echo_json, get_context, read_only
from narratives.core.errors import UsageError
from narratives.store import users as users_mod


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise UsageError("no password on standard input")
        return password
    if not _is_terminal():
        # A script without a terminal: say how to pass the password before asking, rather
        # than a prompt nobody sees and Click's "Aborted!".
        raise UsageError(
            "no password given: standard input is not a terminal to ask on",
            hint="pipe it in with --password-stdin, e.g. "
            "`printf '%s\\n' \"$PASSWORD\" | narrative users add NAME --password-stdin`",
        )
    return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat password")


def _is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


@click.group()
def users() -> None:
    """Editors and admins of the review page."""


@users.command()
@click.argument("name")
@click.option("--role", type=click.Choice(users_mod.ROLES), default="editor", show_default=True)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)
def add(name: str, role: str, password_stdin: bool) -> None:
    """Add a user NAME; asks for the password twice on a terminal.

    Without a terminal (a script, cron), pass --password-stdin and pipe the password in.
    """
    password = _password(password_stdin)
    user = users_mod.add_user(get_context(), name, password, role=role, actor=_actor())
    click.echo(f"Added {user.role} {user.name}.")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@read_only
def list_(as_json: bool) -> None:
    """List users."""
    found = users_mod.list_users(get_context())
    if as_json:
        for u in found:
            echo_json(
                {"name": u.name, "role": u.role, "disabled": u.disabled, "created_at": u.created_at}
            )
        return
    table = Table("name", "role", "status", "created", box=None)
    for u in found:
        table.add_row(
            u.name,
            u.role,
            "disabled" if u.disabled else "active",
            u.created_at.strftime("%Y-%m-%d"),
        )
    console.print(table)


@users.command()
@click.argument("name")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)
def passwd(name: str, password_stdin: bool) -> None:
    """Set a new password for NAME (asked twice on a terminal, or --password-stdin)."""
    ctx = get_context()
    users_mod.get_user(ctx, name)  # fail before asking for a password
    users_mod.set_password(ctx, name, _password(password_stdin), actor=_actor())
    click.echo(f"Password of {name} changed.")


@users.command()
@click.argument("name")
def disable(name: str) -> None:
    """Stop NAME from logging in (their open sessions end too)."""
    users_mod.disable_user(get_context(), name, actor=_actor())
    click.echo(f"Disabled {name}.")


@users.command()
@click.argument("name")
def enable(name: str) -> None:
    """Let a disabled user log in again."""
    users_mod.enable_user(get_context(), name, actor=_actor())
    click.echo(f"Enabled {name}.")


@users.command()
@click.argument("name")
@click.argument("role", type=click.Choice(users_mod.ROLES))
def role(name: str, role: str) -> None:
    """Make NAME an editor or an admin (their open sessions end; the last admin stays one)."""
    user = users_mod.set_role(get_context(), name, role, actor=_actor())
    click.echo(f"{user.name} is now an {user.role}.")


@users.command()
@click.argument("name")
def remove(name: str) -> None:
    """Remove NAME (the audit log keeps their name; the last admin cannot be removed)."""
    users_mod.remove_user(get_context(), name, actor=_actor())
    click.echo(f"Removed {name}.")


def register(cli: click.Group) -> None:
    cli.add_command(users)
