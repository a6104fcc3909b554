"""`narrative users add|list|passwd|disable|enable`: who may log in to the review page.

Anyone who can run this command can read the workspace anyway, so it needs no login;
the audit log records the local account that ran it.
"""

from __future__ import annotations

import getpass
import sys

import click
from rich.table import Table

from narratives.cli._common import console, echo_json, get_context
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
    return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat password")


@click.group()
def users() -> None:
    """Editors and admins of the review page."""


@users.command()
@click.argument("name")
@click.option("--role", type=click.Choice(users_mod.ROLES), default="editor", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def add(name: str, role: str, password_stdin: bool) -> None:
    """Add a user NAME; asks for the password twice."""
    password = _password(password_stdin)
    user = users_mod.add_user(get_context(), name, password, role=role, actor=_actor())
    click.echo(f"Added {user.role} {user.name}.")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
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
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def passwd(name: str, password_stdin: bool) -> None:
    """Set a new password for NAME."""
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


def register(cli: click.Group) -> None:
    cli.add_command(users)
