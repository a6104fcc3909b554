"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from ..context import Context

__all__ = ["get_context", "echo_json", "console", "err_console"]

console = Console()
err_console = Console(stderr=True)


def get_context() -> Context:
    """The workspace context, made once per command invocation."""
    ctx = click.get_current_context()
    ctx.ensure_object(dict)
    root = ctx.find_root()
    root.ensure_object(dict)
    if "context" not in root.obj:
        root.obj["context"] = Context.current()
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
