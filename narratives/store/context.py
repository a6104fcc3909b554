"""What every command and request needs: the workspace, its settings and its database."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.engine import Engine

from narratives.core.config import Settings, load_settings
from narratives.core.workspace import Workspace, current_workspace
from narratives.store.db import open_database

__all__ = ["Context"]


@dataclass
class Context:
    workspace: Workspace
    settings: Settings = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = load_settings(self.workspace)

    @classmethod
    def current(cls) -> Context:
        return cls(current_workspace())

    @cached_property
    def db(self) -> Engine:
        return open_database(self.workspace, self.settings)
