"""The feed files of a campaign: `<slug>.xml`, `<slug>.atom` and `<slug>.media.json` (the public
media manifest: opaque name → workspace path), each written with temp file + `os.replace`, so a
reader sees the old file or the new one, never half of one.

Media are public only through the manifest: the web routes (`narratives.web.public`) and the
static export resolve `/feeds/media/<opaque name>` and nothing else, never a path.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from narratives.channels.rss.render import FeedItem, render_feeds
from narratives.core.campaigns import Campaign
from narratives.core.files import atomic_write
from narratives.core.workspace import Workspace

__all__ = ["FeedFiles", "read_manifest", "resolve_media", "write_feeds"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedFiles:
    """The files one build wrote (or left unchanged), and how many items the feed has."""

    rss: Path
    atom: Path
    manifest: Path
    items: int


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _campaign_lock(feeds_dir: Path, slug: str) -> Iterator[None]:
    """One rebuild of a campaign's feeds at a time, across threads and processes: each rebuild
    reads the committed deliveries, so the last one to write includes every item."""
    with _locks_guard:
        lock = _locks.setdefault(f"{feeds_dir}/{slug}", threading.Lock())
    with lock:
        feeds_dir.mkdir(parents=True, exist_ok=True)
        with open(feeds_dir / f".{slug}.lock", "a+b") as fh:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: threads are still serialised
                yield
                return
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def write_feeds(
    workspace: Workspace,
    campaign: Campaign,
    items_of: Callable[[str], Sequence[FeedItem]],
    *,
    out_dir: Path,
    base_url: str,
) -> FeedFiles:
    """Rebuild one campaign's feeds atomically into `out_dir`. `items_of(slug)` reads the
    published items; it is called under the campaign's lock, so the last rebuild sees all."""
    with _campaign_lock(out_dir, campaign.slug):
        rss, atom, manifest = render_feeds(workspace, campaign, items_of(campaign.slug), base_url)
        paths = FeedFiles(
            rss=out_dir / f"{campaign.slug}.xml",
            atom=out_dir / f"{campaign.slug}.atom",
            manifest=out_dir / f"{campaign.slug}.media.json",
            items=rss.count(b"<item>"),
        )
        # Unchanged files are left alone, so their Last-Modified stays true.
        for path, data in (
            (paths.manifest, json.dumps(manifest, indent=1, sort_keys=True).encode()),
            (paths.rss, rss),
            (paths.atom, atom),
        ):
            if not (path.is_file() and path.read_bytes() == data):
                atomic_write(path, data, fsync=True)
    return paths


def read_manifest(feeds_dir: Path) -> dict[str, str]:
    """Every public media name of every campaign feed in `feeds_dir` → workspace path."""
    out: dict[str, str] = {}
    for p in sorted(feeds_dir.glob("*.media.json")):
        try:
            out.update(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            log.warning("unreadable media manifest %s", p)
    return out


def resolve_media(workspace: Workspace, name: str) -> Path | None:
    """The file behind a public media name, or None if no feed encloses it."""
    rel = read_manifest(workspace.feeds_dir).get(name)
    if rel is None:
        return None
    path = (workspace.root / rel).resolve()
    if not workspace.contains(path) or not path.is_file():
        return None
    return path
