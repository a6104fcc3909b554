"""The workspace: one folder holding settings, campaigns, templates, media and the database.

`narrative --workspace DIR`, else `NARRATIVES_HOME`, else the current directory selects it, so
tests point it at a temporary folder and never touch a real one. A workspace is a folder
`narrative init DIR` made (it has `narratives.toml`); any other folder is refused rather than
quietly filled with a database and media. The shipped defaults live inside the package
(`narratives/defaults/`, read through `importlib.resources`, so a wheel or pipx install works like
a checkout); `narrative init DIR` copies their `campaigns/`, `templates/`, `media/brand/` and
`narratives.toml` into a new workspace. Nothing is created on opening: `ensure` makes the private
folders, for commands that write.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from narratives.core.errors import WorkspaceError

__all__ = ["Workspace", "current_workspace", "init_workspace", "DEFAULTS_ROOT"]

#: The shipped campaigns, templates, brand assets and settings: package data laid out like a
#: workspace. Installed packages are plain folders on disk (setuptools never zips them), so a Path.
DEFAULTS_ROOT = Path(str(files("narratives") / "defaults"))
#: What `narrative init` copies; the review pages' own templates stay in the package.
SHIPPED = ("campaigns", "templates/posts", "templates/video", "media/brand")

SETTINGS_FILE = "narratives.toml"
DATABASE_FILE = "narratives.db"
_FIX = "run `narrative init DIR` to make one, or set NARRATIVES_HOME (or --workspace DIR) to one"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def campaigns_dir(self) -> Path:
        return self.root / "campaigns"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def media_dir(self) -> Path:
        return self.root / "media"

    @property
    def work_dir(self) -> Path:
        """Generated artifacts, one folder per narrative id."""
        return self.media_dir / "work"

    @property
    def state_dir(self) -> Path:
        """Private runtime state (exported sessions, secrets): mode 0700."""
        return self.root / ".narratives"

    @property
    def feeds_dir(self) -> Path:
        return self.media_dir / "feeds"

    @property
    def database_path(self) -> Path:
        return self.root / DATABASE_FILE

    def narrative_dir(self, narrative_id: str) -> Path:
        if not _is_hex_id(narrative_id):
            raise WorkspaceError(f"not a narrative id: {narrative_id!r}")
        return self.work_dir / narrative_id

    def check(self) -> Workspace:
        """Refuses a folder `narrative init` did not make; creates nothing."""
        if not self.root.is_dir():
            raise WorkspaceError(f"workspace folder {self.root} does not exist", hint=_FIX)
        if not self.settings_path.is_file():
            raise WorkspaceError(
                f"{self.root} is not a narratives workspace (it has no {SETTINGS_FILE})",
                hint=_FIX,
            )
        return self

    def ensure(self) -> Workspace:
        """The checked workspace with its private folders made, for a command that writes."""
        self.check()
        # Generated transcripts and videos of personal stories: the owner's only.
        self.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        return self

    def contains(self, path: Path) -> bool:
        """True when `path` resolves inside the workspace (no escaping by `..` or links)."""
        try:
            path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return False
        return True


def _is_hex_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def current_workspace(root: Path | None = None) -> Workspace:
    """The checked workspace at `root` (`--workspace`), else NARRATIVES_HOME, else here."""
    if root is None:
        home = os.environ.get("NARRATIVES_HOME")
        root = Path(home) if home else Path.cwd()
    return Workspace(root.expanduser().resolve()).check()


def init_workspace(target: Path, *, force: bool = False) -> Workspace:
    """Create a workspace from the shipped defaults; refuses to overwrite without `force`."""
    target = target.expanduser().resolve()
    settings = target / SETTINGS_FILE
    # Every refusal before the first copy: a refused init leaves the folder as it was.
    if not force:
        for dst in [target / name for name in SHIPPED] + [settings]:
            if dst.exists():
                raise WorkspaceError(f"{dst} already exists", hint="pass --force to overwrite")
    target.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        src, dst = DEFAULTS_ROOT / name, target / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
    shutil.copyfile(DEFAULTS_ROOT / SETTINGS_FILE, settings)
    return Workspace(target).ensure()
