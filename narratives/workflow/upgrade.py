"""Bringing a workspace made by an earlier version up to this version's tagging defaults.

`narrative init` copies the shipped `campaigns/` into the workspace, and the workspace keeps
its copy when the package is upgraded. Tagging is the part that suffers: the example stories
(`campaigns/examples.jsonl`) and each campaign's `tag_threshold` are calibrated together on
stories no one here wrote, so a workspace still on an earlier version's examples (178 of them,
say) or threshold routes with figures nobody measured, and says nothing about it.

`narratives/defaults/shipped-history.json` (written by `scripts/record_shipped_defaults.py`
from the project's history) lists every example line ever shipped with the version it first
shipped in, and every default threshold. That tells an untouched earlier default from a
choice someone made:
- `stale_defaults` names what is still an earlier version's default (`campaigns check`,
  `process` and `analyse` print it);
- `update_defaults` takes this version's: the example lines shipped since the newest version
  the file has lines from are added, lines an earlier version shipped and this one changed or
  dropped are removed, and lines anyone added, relabelled or deleted stay that way (a
  workspace with no examples file, made before any shipped, gets this version's); a
  `tag_threshold` still at an earlier default is set to this version's where the file writes it
  plainly (else it says to set it by hand). Each file it changes is copied aside first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from narratives.core.campaigns import Campaign, load_campaign_file
from narratives.core.errors import EnvironmentProblem, NarrativesError
from narratives.core.files import atomic_write, named_os_errors
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
#: Held while a workspace's defaults are updated (in its private `.narratives/` folder).
_LOCK = "campaigns-update.lock"
#: A top-level `tag_threshold = 0.5` line, as the shipped files write it (before any table).
_THRESHOLD_LINE = re.compile(
    r"^(tag_threshold[ \t]*=[ \t]*)([0-9.]+)([ \t]*(?:#[^\r\n]*)?\r?)$", re.M
)
#: How long an update waits for another one to finish before giving up.
LOCK_WAIT_SECONDS = 30


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
    """This version's default threshold when `c`'s is still an earlier version's. A file that
    writes no threshold takes this version's default already."""
    if "tag_threshold" not in c.model_fields_set:
        return None
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
        if plan.missing:
            what = "is missing, so tags are scored by their descriptions alone"
        elif plan.exact:
            stories = versions[plan.base]["stories"]
            what = f"is the example set of an earlier version ({stories} stories)"
        else:
            changes = []
            if plan.added:
                changes.append(f"lacks {len(plan.added)} example stories this version ships")
            if plan.removed:
                changes.append(f"has {plan.removed} that this version changed or dropped")
            what = " and ".join(changes)
        out.append(
            f"campaigns/{EXAMPLES} {what}; this version's tag thresholds were calibrated with "
            f"its {versions[-1]['stories']} example stories: `narrative campaigns update` "
            + ("adds them" if plan.missing or not plan.removed else "brings them up to date")
            + (f" and keeps your {plan.kept_own} own" if plan.kept_own else "")
        )
    for c in campaigns:
        new = _earlier_threshold(c, history)
        if new is None or c.path is None:
            continue
        how = (
            "`narrative campaigns update` sets it"
            if _threshold_edit(c.path, new) is not None
            else f"set it in {_relative(workspace, c.path)} (it is written in a way "
            "`campaigns update` does not edit)"
        )
        out.append(
            f"{c.slug}: tag_threshold {c.tag_threshold:g} is an earlier version's default; "
            f"this version's is {new:g}: {how}"
        )
    return out


@dataclass
class _ExamplesPlan:
    """The workspace's examples file brought up to date, line by line."""

    kept: list[str]
    added: list[str]
    removed: int
    kept_own: int
    #: The newest shipped version any of its lines comes from (-1: no file).
    base: int
    #: The file is that version's file, byte for byte.
    exact: bool
    missing: bool = False
    #: The file's own line ending, kept.
    newline: str = "\n"

    def text(self) -> str:
        return self.newline.join([*self.kept, *self.added]) + self.newline


def _plan_examples(path: Path, history: dict[str, Any]) -> _ExamplesPlan | None:
    """How the examples file at `path` changes to take this version's shipped lines, or None
    when there is nothing to bring up to date (none of its lines ever shipped: someone's own
    set, or an empty file someone left on purpose; or it cannot be read as text).

    No file at all is one made before any examples shipped: this version's are added. A line
    an earlier version shipped and this one changed or dropped is removed; a line first
    shipped after the newest version the file has lines from is added (one shipped in that
    version or before and missing was deleted on purpose, and stays out); every other line
    (someone's own, a relabelled one, one that does not parse) is kept as it is."""
    first: dict[str, int] = history["examples"]["first_shipped_in"]
    versions = history["examples"]["versions"]
    shipped = [line for line in _shipped_lines() if line.strip()]
    current = {example_key(d): line for line in shipped if (d := _parse(line))}
    if not path.exists():
        return _ExamplesPlan([], list(current.values()), 0, 0, -1, False, missing=True)
    try:
        raw = path.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None  # `campaigns check` says what is wrong with it (not UTF-8)
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
    newline = "\r\n" if b"\r\n" in raw else "\n"
    return _ExamplesPlan(kept, added, removed, own, base, exact, newline=newline)


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
    #: Example lines: this version's added, earlier shipped ones removed, your own kept.
    added: int = 0
    removed: int = 0
    kept_own: int = 0
    thresholds: list[ThresholdChange] = field(default_factory=list)
    #: Earlier defaults written in a way this does not edit safely: to be set by hand.
    by_hand: list[ThresholdChange] = field(default_factory=list)
    #: Copies of the files as they were, relative to the workspace.
    backups: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.thresholds)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changed": self.changed,
            "examples": {"added": self.added, "removed": self.removed, "own": self.kept_own},
            "thresholds": [t.__dict__ for t in self.thresholds],
            "set_by_hand": [t.__dict__ for t in self.by_hand],
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
    earlier version's; never touch a line or a value someone chose.

    Everything is worked out and checked before the first write, under a lock (two updates at
    once: the second finds nothing left to do), every file is copied aside before any is
    replaced, and a replaced file keeps its mode. A write that fails part-way says which files
    were already replaced and where their copies are."""
    history = history or read_history()
    result = DefaultsUpdate(dry_run=dry_run)
    with contextlib.nullcontext() if dry_run else _locked(workspace):
        writes: list[tuple[Path, str]] = []
        path = workspace.campaigns_dir / EXAMPLES
        plan = _plan_examples(path, history)
        if plan is not None and (plan.added or plan.removed):
            result.added, result.removed = len(plan.added), plan.removed
            result.kept_own = plan.kept_own
            writes.append((path, plan.text()))
        for c in campaigns:
            if c.path is None:
                continue
            c = load_campaign_file(c.path)  # as it is now, under the lock
            new = _earlier_threshold(c, history)
            if new is None:
                continue
            change = ThresholdChange(c.slug, _relative(workspace, c.path), c.tag_threshold, new)
            edited = _threshold_edit(c.path, new)
            if edited is None:
                result.by_hand.append(change)
                continue
            result.thresholds.append(change)
            writes.append((c.path, edited))
        if dry_run or not writes:
            return result
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            for target, _ in writes:
                if target.exists():
                    result.backups.append(_back_up(workspace, target, stamp))
        except NarrativesError as exc:
            for copy in result.backups:  # a copy aside is whole or not there
                (workspace.root / copy).unlink(missing_ok=True)
            raise EnvironmentProblem(f"{exc}; nothing was updated", hint=exc.hint) from exc
        done: list[str] = []
        for target, text in writes:
            try:
                _replace(target, text)
            except NarrativesError as exc:
                raise EnvironmentProblem(
                    f"{exc}; "
                    + (f"already updated: {', '.join(done)}; " if done else "nothing updated; ")
                    + f"the files as they were: {', '.join(result.backups) or 'none (new files)'}",
                    hint=exc.hint,
                ) from exc
            done.append(_relative(workspace, target))
    return result


@contextlib.contextmanager
def _locked(workspace: Workspace) -> Iterator[None]:
    """Held while one process updates the workspace's defaults (others wait their turn)."""
    from filelock import FileLock, Timeout

    lock = FileLock(workspace.state_dir / _LOCK, timeout=LOCK_WAIT_SECONDS)
    with named_os_errors(workspace.state_dir, "lock the campaign defaults in"):
        workspace.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            lock.acquire()
        except Timeout:
            raise EnvironmentProblem(
                f"another `narrative campaigns update` has held {lock.lock_file} for "
                f"{LOCK_WAIT_SECONDS} s; nothing was updated",
                hint="wait for it to finish, then run this again",
            ) from None
    try:
        yield
    finally:
        lock.release()


def _threshold_edit(path: Path, new: float) -> str | None:
    """The campaign file's text with its top-level `tag_threshold` set to `new`, or None when
    it is written in a way this cannot edit safely (quoted, in a table, inside a string...).
    The edit is checked: the new text parses to the same values but the threshold."""
    try:
        text = path.read_bytes().decode("utf-8")  # line endings as they are
        before = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    head, sep, rest = text.partition("\n[")  # top-level keys come before any table
    value = f"{new:g}"
    edited, n = _THRESHOLD_LINE.subn(lambda m: f"{m[1]}{value}{m[3]}", head, count=1)
    if n != 1:
        return None
    edited += sep + rest
    try:
        after = tomllib.loads(edited)
    except tomllib.TOMLDecodeError:
        return None
    return edited if after == {**before, "tag_threshold": new} else None


def _replace(path: Path, text: str) -> None:
    """Write `text` over `path` atomically, keeping its mode (example stories are personal
    texts: a file kept to its owner stays so) and, where allowed, its owner."""
    try:
        st = path.stat()
    except FileNotFoundError:
        atomic_write(path, text, mode=0o600)
        return
    atomic_write(path, text, mode=stat.S_IMODE(st.st_mode))
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(OSError):
            os.chown(path, st.st_uid, st.st_gid)


def _back_up(workspace: Workspace, path: Path, stamp: str) -> str:
    """A copy of `path` beside it under a name no other copy has (mode and times kept)."""
    with named_os_errors(path.parent, "copy a file aside in"):
        for n in range(1, 1000):
            copy = path.with_name(f"{path.name}.before-update-{stamp}" + (f"-{n}" if n > 1 else ""))
            try:
                fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            os.close(fd)
            try:
                shutil.copy2(path, copy)
            except BaseException:
                copy.unlink(missing_ok=True)  # never a partial copy that looks whole
                raise
            return _relative(workspace, copy)
    raise EnvironmentProblem(f"cannot name a copy of {path} to keep aside")


def _relative(workspace: Workspace, path: Path) -> str:
    try:
        return str(path.relative_to(workspace.root))
    except ValueError:
        return str(path)
