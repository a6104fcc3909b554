"""Ingest: find recordings under the paths a user names, and register each as a Narrative.

A narrative's id is the SHA-256 of its bytes, so the same audio under two names is one
narrative (both paths remembered) and re-running on the same files finds work already done.

The workspace keeps its own copy of each recording, `media/recordings/<sha256>.<ext>` (folder
0700, file 0600), so the workspace can be moved, backed up or handed over as a whole. The copy
is written under a temporary name in the same folder, fsynced, hashed again and only then
renamed: a file under the final name is always whole and verified, whatever kills the process.
`keep = "reference"` (`process --by-reference`) remembers only the original's path, for large
archives, as before this copy existed. Every reader of the recording (transcription, render, the
web page's audio) goes through `source_path`/`recording_file`: the copy when there is one, else
a remembered path; a moved original is an error naming its path and the fix (`relink`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from narratives.core.clock import utcnow
from narratives.core.errors import (
    BadRecording,
    EnvironmentProblem,
    InvalidState,
    NotFound,
    UsageError,
)
from narratives.core.files import named_os_errors, remove_stale_parts
from narratives.core.workspace import Workspace
from narratives.store.context import Context
from narratives.store.narrative_rows import Recording, add_recording, recording, take_in_again

__all__ = [
    "RECORDING_EXTENSIONS",
    "RECORDINGS_DIR",
    "Found",
    "find_recordings",
    "hash_file",
    "copy_in",
    "register",
    "relink",
    "source_path",
    "recording_file",
    "stored_copy",
    "workspace_outputs",
]

#: Audio files, and video files whose audio track is the narrative.
RECORDING_EXTENSIONS = frozenset(
    ".wav .wave .mp3 .m4a .aac .ogg .oga .opus .flac .mp4 .m4v .webm .mov .mkv".split()
)

_CHUNK = 1 << 20
#: Where the workspace keeps its copies of recordings, relative to its root.
RECORDINGS_DIR = "media/recordings"


@dataclass(frozen=True)
class Found:
    """A path to process, or the reason it cannot be (`error`)."""

    path: Path
    error: str | None = None


def workspace_outputs(workspace: Workspace) -> list[Path]:
    """The workspace's own folders of recordings and generated files, which a walk for
    recordings skips (`process .` in a workspace finds nothing twice)."""
    return [workspace.work_dir, workspace.root / RECORDINGS_DIR]


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


def _stored_name(narrative_id: str, original: Path) -> str:
    """`<sha256>.<ext>`: the id names the content, the extension tells players its type."""
    suffix = original.suffix.lower()
    return narrative_id + (suffix if suffix in RECORDING_EXTENSIONS else ".bin")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` survive a power cut (the folder's entry is data too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_in(workspace: Workspace, path: Path, narrative_id: str, size: int) -> str:
    """Copy the recording at `path` (whose SHA-256 is `narrative_id`) into the workspace;
    returns the copy's path relative to the workspace root.

    A copy already there under its final name is whole (nothing else is ever renamed there)
    and is kept. Otherwise the bytes go to a temporary file in the same folder (mode 0600),
    are fsynced and hashed again from the disk, and the file is renamed only when the hash is
    the narrative's id: a kill leaves at most a `.<name>.*.part` file, never a half copy under
    the final name; such files are removed by a later copy once a day old
    (`remove_stale_parts`). A source that changed while it was read is a BadRecording.
    """
    folder = workspace.root / RECORDINGS_DIR
    name = _stored_name(narrative_id, path)
    final = folder / name
    relative = f"{RECORDINGS_DIR}/{name}"
    with named_os_errors(folder, "copy the recording into"):
        if final.is_file() and final.stat().st_size == size:
            return relative
        # 0700: these are people's voices (mkdir's mode is only narrowed by the umask).
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_stale_parts(folder)  # what earlier killed copies left
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        tmp = Path(tmp_name)
        try:
            os.fchmod(fd, 0o600)
            digest = hashlib.sha256()
            with open(fd, "wb") as dst, open(path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if digest.hexdigest() != narrative_id:
                raise BadRecording(
                    f"{path.name}: the file changed while it was being copied in",
                    hint="run `narrative process` on it again once nothing writes to it",
                )
            if _digest_of(tmp) != narrative_id:
                raise BadRecording(
                    f"{path.name}: the copy in {folder} does not match the original "
                    "(a disk problem?)",
                    hint="check the disk, then run `narrative process` on it again",
                )
            os.replace(tmp, final)
            _fsync_folder(folder)
        except FileNotFoundError as exc:
            if exc.filename != str(tmp):
                raise
            raise EnvironmentProblem(
                f"{path.name}: its temporary copy in {folder} was removed while it was being "
                "written (its source stalled for a day, or something else cleans that folder)",
                hint="run `narrative process` on it again",
            ) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return relative


def _refuse_erased(found: Recording, path: Path) -> None:
    assert found.erased_at is not None
    raise InvalidState(
        f"{path.name}: this recording's narrative ({found.narrative_id[:12]}) was erased on "
        f"{found.erased_at:%Y-%m-%d %H:%M} UTC; it is not taken in again unasked",
        hint="pass --force to process it again as a new story (the narrator's consent must be "
        "recorded again)",
    )


def register(
    ctx: Context,
    path: Path,
    *,
    source: str = "file",
    by_reference: bool | None = None,
    force: bool = False,
    actor: str = "intake",
) -> tuple[str, bool]:
    """Register the recording at `path`; returns (narrative id, whether it is new).

    The recording is copied into the workspace unless `by_reference` (default: the settings'
    `[ingest] keep`). An erased narrative's recording is refused (InvalidState) unless `force`,
    which takes it in again."""
    narrative_id, size = hash_file(path)
    if by_reference is None:
        by_reference = ctx.settings.ingest.keep == "reference"
    with ctx.db.connect() as conn:
        known = recording(conn, narrative_id)
    if known is not None and known.erased_at is not None and not force:
        _refuse_erased(known, path)
    # Copied before the row is written: a row never names a copy that is not whole.
    stored_as = None if by_reference else copy_in(ctx.workspace, path, narrative_id, size)
    for attempt in range(3):
        now = utcnow()
        try:
            with ctx.db.begin() as conn:
                if known is not None and known.erased_at is not None:
                    take_in_again(conn, narrative_id, label=path.name, actor=actor, now=now)
                new = add_recording(
                    conn,
                    narrative_id,
                    path=str(path.resolve()),
                    size_bytes=size,
                    label=path.name,
                    source=source,
                    now=now,
                    stored_as=stored_as,
                )
            break
        except IntegrityError:
            # Another process registered the same recording (or path) between our read and
            # our insert: its row is there now, so the next try only updates it.
            if attempt == 2:
                raise
    return narrative_id, new or (known is not None and known.erased_at is not None)


def relink(ctx: Context, narrative_id: str, path: Path, *, copy: bool = False) -> Recording:
    """Remember `path` as where the narrative's recording is now, after checking that its
    SHA-256 is the narrative's id (`copy`: also copy it into the workspace)."""
    with ctx.db.connect() as conn:
        known = recording(conn, narrative_id)
    if known is None:
        raise NotFound(f"no narrative with id {narrative_id}", hint="see `narrative status`")
    if known.erased_at is not None:
        _refuse_erased(known, path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    digest, size = hash_file(path)
    if digest != narrative_id:
        raise UsageError(
            f"{path} is not this narrative's recording (its SHA-256 is {digest[:12]}..., the "
            f"narrative's id is {narrative_id[:12]}...)",
            hint="name the same file, byte for byte; a re-encoded file is a new narrative",
        )
    stored_as = copy_in(ctx.workspace, path, narrative_id, size) if copy else None
    with ctx.db.begin() as conn:
        add_recording(
            conn,
            narrative_id,
            path=str(path.resolve()),
            size_bytes=size,
            label=path.name,
            source="file",
            now=utcnow(),
            stored_as=stored_as,
        )
        found = recording(conn, narrative_id)
    assert found is not None
    return found


def _candidates(ctx: Context, found: Recording) -> list[Path]:
    """The copy first, then the remembered paths (newest seen first)."""
    root = ctx.workspace.root
    out = [root / found.stored_as] if found.stored_as else []
    for p in found.paths:
        path = Path(p)
        out.append(path if path.is_absolute() else root / path)
    return out


def _usable(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def stored_copy(ctx: Context, narrative_id: str) -> Path | None:
    """The workspace's own copy of the recording when it is on disk, else None."""
    with ctx.db.connect() as conn:
        found = recording(conn, narrative_id)
    if found is None or found.erased_at is not None or not found.stored_as:
        return None
    path = ctx.workspace.root / found.stored_as
    return path if _usable(path) else None


def recording_file(ctx: Context, narrative_id: str) -> Path | None:
    """The narrative's recording on disk (the workspace's copy, else a remembered path), or
    None when there is none (erased, moved, never registered)."""
    with ctx.db.connect() as conn:
        found = recording(conn, narrative_id)
    if found is None or found.erased_at is not None:
        return None
    return next((p for p in _candidates(ctx, found) if _usable(p)), None)


def source_path(ctx: Context, narrative_id: str) -> Path:
    """The narrative's recording on disk, for the stages that read it; a clear error naming
    the missing path and the fix when it is gone."""
    with ctx.db.connect() as conn:
        found = recording(conn, narrative_id)
    short = narrative_id[:12]
    if found is None:
        raise NotFound(f"no narrative with id {short}", hint="see `narrative status`")
    if found.erased_at is not None:
        raise InvalidState(
            f"narrative {short} was erased on {found.erased_at:%Y-%m-%d %H:%M} UTC",
            hint="process its recording again with --force to take it in again",
        )
    candidates = _candidates(ctx, found)
    for p in candidates:
        if _usable(p):
            return p
    fix = (
        f"`narrative relink {short} PATH` with the file where it is now (its hash is checked), "
        "or run `narrative process` on the folder it moved to"
    )
    if found.stored_as:
        raise BadRecording(
            f"narrative {short}: the workspace's copy of its recording "
            f"({ctx.workspace.root / found.stored_as}) is missing"
            + (f", and so is {candidates[1]}" if len(candidates) > 1 else ""),
            hint=fix,
        )
    if not candidates:
        raise BadRecording(f"narrative {short}: no recording was ever registered", hint=fix)
    raise BadRecording(
        f"narrative {short}: its recording (kept by reference) is no longer at {candidates[0]}",
        hint=fix,
    )
