"""Bringing a workspace made by an earlier version up to this version's tagging defaults.

`narrative init` copies the shipped `campaigns/` into the workspace, and the workspace keeps
its copy when the package is upgraded. Tagging is the part that suffers: the example stories
(`campaigns/examples.jsonl`) and each campaign's `tag_threshold` are calibrated together on
stories no one here wrote, so a workspace still on an earlier version's 178 examples and a 0.5
threshold routes with figures nobody measured, and says nothing about it.

`narratives/defaults/shipped-history.json` (written by `scripts/record_shipped_defaults.py`
from the project's history) lists every example line ever shipped with the version it first
shipped in, and every default threshold. That tells an untouched earlier default from a
choice someone made:
- `stale_defaults` names what is still an earlier version's default (`campaigns check` and
  `process` print it);
- `update_defaults` takes this version's: the example lines shipped since the newest version
  the file has lines from are added, lines an earlier version shipped and this one changed or
  dropped are removed, and lines anyone added, relabelled or deleted stay that way; a
  `tag_threshold` still at an earlier default is set to this version's. Each file it changes
  is copied aside first.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from narratives.core.campaigns import Campaign, load_campaign_file
from narratives.core.errors import ConfigError
from narratives.core.files import atomic_write
from narratives.core.workspace import DEFAULTS_ROOT, Workspace

__all__ = [
    "HISTORY_FILE",
    "DefaultsUpdate",
    "ThresholdChange",
    "example_key",
    "read_history",
    "stale_defaults",
    "update_defaults",
]

HISTORY_FILE = DEFAULTS_ROOT / "shipped-history.json"
EXAMPLES = "examples.jsonl"
#: A top-level `tag_threshold = 0.5` line, as the shipped files write it (before any table).
_THRESHOLD_LINE = re.compile(r"^(tag_threshold\s*=\s*)([0-9.]+)([ \t]*(?:#.*)?)$", re.M)


def example_key(story: dict[str, Any]) -> str:
    """One example line's identity: its text, tags and notes (order and spacing aside)."""
    canonical = {
        "text": str(story.get("text", "")).strip(),
        "tags": sorted(str(t) for t in story.get("tags") or ()),
        "notes": sorted(str(n) for n in story.get("notes") or ()),
    }
    blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def read_history(path: Path = HISTORY_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _shipped_lines() -> list[str]:
    return (DEFAULTS_ROOT / "campaigns" / EXAMPLES).read_text(encoding="utf-8").splitlines()


def _parse(line: str) -> dict[str, Any] | None:
    """The example on this line, or None for a blank or unreadable line (kept as it is)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "text" in data else None


def _earlier_threshold(c: Campaign, history: dict[str, Any]) -> float | None:
    """This version's default threshold when `c`'s is still an earlier version's."""
    known = history["tag_threshold"].get(c.slug)
    if known and c.tag_threshold in known["earlier"] and c.tag_threshold != known["current"]:
        return float(known["current"])
    return None


def stale_defaults(
    workspace: Workspace, campaigns: list[Campaign], history: dict[str, Any] | None = None
) -> list[str]:
    """What in this workspace is still an earlier version's tagging default, one line each."""
    history = history or read_history()
    out = []
    plan = _plan_examples(workspace.campaigns_dir / EXAMPLES, history)
    if plan is not None and (plan.added or plan.removed):
        versions = history["examples"]["versions"]
        if plan.base < len(versions) - 1 and plan.exact:
            stories = versions[plan.base]["stories"]
            what = f"is the example set of an earlier version ({stories} stories)"
        else:
            what = f"lacks {len(plan.added)} example stories this version ships" + (
                f" and has {plan.removed} it changed or dropped" if plan.removed else ""
            )
        out.append(
            f"campaigns/{EXAMPLES} {what}; the tag thresholds were calibrated with this "
            f"version's {versions[-1]['stories']}: `narrative campaigns update` takes them"
            + ("" if plan.exact else " and keeps the ones you added")
        )
    for c in campaigns:
        new = _earlier_threshold(c, history)
        if new is not None:
            out.append(
                f"{c.slug}: tag_threshold {c.tag_threshold:g} is an earlier version's default; "
                f"this version's is {new:g}: `narrative campaigns update` sets it"
            )
    return out


@dataclass
class _ExamplesPlan:
    """The workspace's examples file brought up to date, line by line."""

    kept: list[str]
    added: list[str]
    removed: int
    kept_own: int
    #: The newest shipped version any of its lines comes from.
    base: int
    #: The file is that version's file, byte for byte.
    exact: bool

    def text(self) -> str:
        return "\n".join([*self.kept, *self.added]) + "\n"


def _plan_examples(path: Path, history: dict[str, Any]) -> _ExamplesPlan | None:
    """How the examples file at `path` changes to take this version's shipped lines, or None
    when there is nothing to bring up to date (no file, or none of its lines ever shipped).

    A line an earlier version shipped and this one changed or dropped is removed; a line
    first shipped after the newest version the file has lines from is added (one shipped in
    that version or before and missing was deleted on purpose, and stays out); every other
    line (someone's own, a relabelled one, one that does not parse) is kept as it is."""
    if not path.is_file():
        return None
    first: dict[str, int] = history["examples"]["first_shipped_in"]
    versions = history["examples"]["versions"]
    shipped = [line for line in _shipped_lines() if line.strip()]
    current = {example_key(d): line for line in shipped if (d := _parse(line))}
    raw = path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    keys = [example_key(d) if (d := _parse(line)) else None for line in lines]
    seen = [first[k] for k in keys if k is not None and k in first]
    if not seen:
        return None
    base = max(seen)
    kept, removed, own, texts = [], 0, 0, set()
    for line, key in zip(lines, keys, strict=True):
        if key is not None and key in first and key not in current:
            removed += 1
            continue
        kept.append(line)
        if key is not None:
            texts.add(str(_parse(line)["text"]).strip())
            own += key not in current
    added = [
        line
        for key, line in current.items()
        if first[key] > base and key not in keys and str(_parse(line)["text"]).strip() not in texts
    ]
    exact = hashlib.sha256(raw).hexdigest() == versions[base]["sha256"]
    return _ExamplesPlan(kept, added, removed, own, base, exact)


@dataclass(frozen=True)
class ThresholdChange:
    slug: str
    path: str
    before: float
    after: float


@dataclass
class DefaultsUpdate:
    """What `update_defaults` changed (or, with `dry_run`, would change)."""

    dry_run: bool
    #: Example lines: this version's added, earlier shipped ones removed, others' kept.
    added: int = 0
    removed: int = 0
    kept_own: int = 0
    thresholds: list[ThresholdChange] = field(default_factory=list)
    #: Copies of the files as they were, relative to the workspace.
    backups: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.thresholds)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changed": self.changed,
            "examples": {"added": self.added, "removed": self.removed, "kept": self.kept_own},
            "thresholds": [t.__dict__ for t in self.thresholds],
            "backups": self.backups,
        }


def update_defaults(
    workspace: Workspace,
    campaigns: list[Campaign],
    *,
    dry_run: bool = False,
    history: dict[str, Any] | None = None,
) -> DefaultsUpdate:
    """Take this version's example stories and thresholds where the workspace still has an
    earlier version's; never touch a line or a value someone chose."""
    history = history or read_history()
    result = DefaultsUpdate(dry_run=dry_run)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = workspace.campaigns_dir / EXAMPLES
    plan = _plan_examples(path, history)
    if plan is not None and (plan.added or plan.removed):
        result.added, result.removed, result.kept_own = len(plan.added), plan.removed, plan.kept_own
        if not dry_run:
            result.backups.append(_back_up(workspace, path, stamp))
            atomic_write(path, plan.text())
    for c in campaigns:
        new = _earlier_threshold(c, history)
        if new is None or c.path is None:
            continue
        text = c.path.read_text(encoding="utf-8")
        head, sep, rest = text.partition("\n[")  # top-level keys only
        value = f"{new:g}"
        edited, n = _THRESHOLD_LINE.subn(lambda m, v=value: f"{m[1]}{v}{m[3]}", head, count=1)
        if n != 1:
            continue  # written some other way (inline table, odd spacing): leave it
        result.thresholds.append(
            ThresholdChange(c.slug, _relative(workspace, c.path), c.tag_threshold, new)
        )
        if dry_run:
            continue
        result.backups.append(_back_up(workspace, c.path, stamp))
        atomic_write(c.path, edited + sep + rest)
        if load_campaign_file(c.path).tag_threshold != new:  # never leave a file half-right
            shutil.copyfile(workspace.root / result.backups[-1], c.path)
            raise ConfigError(f"{c.path}: could not set tag_threshold; the file is as it was")
    return result


def _back_up(workspace: Workspace, path: Path, stamp: str) -> str:
    copy = path.with_name(f"{path.name}.before-update-{stamp}")
    shutil.copy2(path, copy)
    return _relative(workspace, copy)


def _relative(workspace: Workspace, path: Path) -> str:
    try:
        return str(path.relative_to(workspace.root))
    except ValueError:
        return str(path)
