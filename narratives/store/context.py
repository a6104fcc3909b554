"""What every command and request needs: the workspace, its settings and its database."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine

from narratives.core.config import Settings, load_settings
from narratives.core.errors import EnvironmentProblem
from narratives.core.workspace import Workspace, current_workspace
from narratives.store.db import open_database

__all__ = ["Context"]


@dataclass
class Context:
    workspace: Workspace
    settings: Settings = field(default=None)  # type: ignore[assignment]
    #: For a command that only reads: no folders made, no database file if none exists yet.
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = load_settings(self.workspace)

    @classmethod
    def current(cls, root: Path | None = None, *, read_only: bool = False) -> Context:
        """The workspace at `root`, else NARRATIVES_HOME, else here; refused unless
        `narrative init` made it."""
        try:
            workspace = current_workspace(root)
            return cls(workspace if read_only else workspace.ensure(), read_only=read_only)
        except OSError as exc:
            # A workspace this user may not read or write (its folders, narratives.toml).
            where = exc.filename or root or "the workspace"
            named = EnvironmentProblem.from_os_error(exc, where, "use")
            if named is None:
                raise
            raise named from exc

    @cached_property
    def db(self) -> Engine:
        return open_database(self.workspace, self.settings, create=not self.read_only)
