"""A static copy of the feeds for hosting elsewhere, with the media they enclose."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from narratives.channels.rss.files import write_feeds
from narratives.channels.rss.render import FeedItem, render_feeds
from narratives.core.campaigns import Campaign
from narratives.core.workspace import Workspace

__all__ = ["build_static"]

log = logging.getLogger(__name__)


def _same_content(src: Path, dst: Path) -> bool:
    """Whether `dst` already holds `src`'s bytes. Hashed every time: `files.file_sha256`
    trusts size and mtime, and a same-size rewrite within one timestamp tick would slip by."""
    if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
        return False
    digests = []
    for path in (src, dst):
        with open(path, "rb") as fh:
            digests.append(hashlib.file_digest(fh, "sha256").digest())
    return digests[0] == digests[1]


def build_static(
    workspace: Workspace,
    all_campaigns: Iterable[Campaign],
    items_of: Callable[[str], Sequence[FeedItem]],
    out_dir: Path,
    *,
    base_url: str,
    campaigns: list[str] | None = None,
) -> list[Path]:
    """A static copy for hosting elsewhere: `out_dir/feeds/<slug>.xml|.atom` and the media
    they enclose in `out_dir/feeds/media/`, with every link under `base_url`.

    A file is copied when its content differs (a re-anonymised caption file can keep its size),
    and media that no current feed encloses are deleted, so a withdrawn item's video leaves the
    export too. Campaigns left out by `campaigns` still count: their media stay.
    """
    feeds_out = out_dir / "feeds"
    media_out = feeds_out / "media"
    media_out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    public: set[str] = set()
    for c in all_campaigns:
        if c.channels.rss is None:
            continue
        if campaigns and c.slug not in campaigns:
            public.update(render_feeds(workspace, c, items_of(c.slug), base_url)[2])
            continue
        files = write_feeds(workspace, c, items_of, out_dir=feeds_out, base_url=base_url)
        written += [files.rss, files.atom]
        manifest = json.loads(files.manifest.read_text(encoding="utf-8"))
        files.manifest.unlink()
        public.update(manifest)
        for name, rel in sorted(manifest.items()):
            src = workspace.root / rel
            dst = media_out / name
            if _same_content(src, dst):
                continue
            tmp = dst.with_name(f".{name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            written.append(dst)
    for old in media_out.iterdir():
        if old.name not in public and old.is_file():
            log.info("removing %s: no feed encloses it any more", old)
            old.unlink()
    for lock in feeds_out.glob(".*.lock"):
        lock.unlink(missing_ok=True)
    return written
