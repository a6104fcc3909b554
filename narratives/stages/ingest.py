"""Ingest: find recordings under the paths a user names, and register each as a Narrative.

A narrative's id is the SHA-256 of its bytes, so the same audio under two names is one
narrative (both paths remembered) and re-running on the same files finds work already done.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from narratives.core.clock import utcnow
from narratives.core.errors import BadRecording
from narratives.store.narrative_rows import add_recording, recording_paths

__all__ = [
    "RECORDING_EXTENSIONS",
    "Found",
    "find_recordings",
    "hash_file",
    "register",
    "source_path",
]

#: Audio files, and video files whose audio track is the narrative.
RECORDING_EXTENSIONS = frozenset(
    ".wav .wave .mp3 .m4a .aac .ogg .oga .opus .flac .mp4 .m4v .webm .mov .mkv".split()
)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Found:
    """A path to process, or the reason it cannot be (`error`)."""

    path: Path
    error: str | None = None


def find_recordings(paths: Iterable[Path], *, skip: Iterable[Path] = ()) -> Iterator[Found]:
    """Files named directly are always tried; folders are walked for recording extensions.

    Hidden files and folders are skipped, and so are the folders in `skip` (the workspace's
    own `media/work` output). Anything that is not a regular file (a FIFO or a device would
    block the read forever) or is a symlink loop comes back as a `Found` with an error.
    """
    skipped = {os.path.realpath(p) for p in skip}
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists() and not path.is_symlink():
            yield Found(path, "no such file or folder")
            continue
        if path.is_dir():
            for root, dirs, files in os.walk(path, onerror=None):
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".") and os.path.realpath(Path(root) / d) not in skipped
                )
                for name in sorted(files):
                    child = Path(root) / name
                    if name.startswith(".") or child.suffix.lower() not in RECORDING_EXTENSIONS:
                        continue
                    yield from _found(child, seen)
        else:
            yield from _found(path, seen)


def _found(path: Path, seen: set[Path]) -> Iterator[Found]:
    """`path` once per real file it names, or why it cannot be read."""
    try:
        st = path.stat()
        key = path.resolve()
    except RuntimeError:  # Python < 3.13: resolve() on a symlink loop
        yield Found(path, "symlink loop")
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            why = "symlink loop"
        elif isinstance(exc, FileNotFoundError) and path.is_symlink():
            why = "broken symlink"
        else:
            why = f"cannot read it ({exc.strerror or exc})"
        yield Found(path, why)
        return
    if not stat.S_ISREG(st.st_mode):
        yield Found(path, "not a regular file")
    elif key not in seen:
        seen.add(key)
        yield Found(path)


def hash_file(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes); unreadable, empty or non-regular files are BadRecording."""
    digest = hashlib.sha256()
    size = 0
    try:
        # Non-blocking, so opening a FIFO returns at once and fstat can refuse it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise BadRecording(f"{path.name}: is a folder, not a recording")
            if not stat.S_ISREG(mode):
                raise BadRecording(f"{path.name}: not a regular file")
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except PermissionError as exc:
        raise BadRecording(f"{path.name}: cannot read the file (permission denied)") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadRecording(f"{path.name}: symlink loop") from exc
        raise BadRecording(f"{path.name}: cannot read the file ({exc.strerror})") from exc
    if size == 0:
        raise BadRecording(f"{path.name}: the file is empty")
    return digest.hexdigest(), size


def register(db: Engine, path: Path, *, source: str = "file") -> tuple[str, bool]:
    """Register the recording at `path`; returns (narrative id, whether it is new)."""
    narrative_id, size = hash_file(path)
    now = utcnow()
    stored = str(path.resolve())
    with db.begin() as conn:
        new = add_recording(
            conn,
            narrative_id,
            path=stored,
            size_bytes=size,
            label=path.name,
            source=source,
            now=now,
        )
    return narrative_id, new


def source_path(db: Engine, narrative_id: str) -> Path:
    """A path of the narrative's recording that is still on disk (the newest seen first)."""
    with db.connect() as conn:
        paths = recording_paths(conn, narrative_id)
    for p in paths:
        if Path(p).is_file():
            return Path(p)
    raise BadRecording(
        f"narrative {narrative_id[:12]}: none of its recordings is on disk any more",
        hint="run `narrative process` on the recording again",
    )
