"""The typed readers of each narrative's files in `media/work/<id>/`, with one error policy.

A file that is not there yet is `None` (the stage that writes it has not run); a file that is
there but cannot be read or parsed is `UnreadableFile`, naming the file, so that a damaged
workspace is reported rather than taken for an unprocessed story. Every reader of
transcript.json and analysis.json goes through here, and so do their writers (the transcribe
and analyse stages). (redactions.json, the editors' marked terms, is read and written under its
lock by `narratives.store.redactions`.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from narratives.core.errors import UnreadableFile
from narratives.core.files import atomic_write_json, write_files_atomically
from narratives.core.workspace import Workspace
from narratives.records.analysis import Analysis
from narratives.records.transcript import Transcript

__all__ = [
    "TRANSCRIPT_FILE",
    "CORRECTED_TRANSCRIPT_FILE",
    "ANALYSIS_FILE",
    "transcript_path",
    "corrected_transcript_path",
    "read_original_transcript",
    "write_corrected_transcript",
    "remove_corrected_transcript",
    "analysis_path",
    "read_transcript",
    "read_analysis",
    "write_transcript",
    "write_analysis",
]

TRANSCRIPT_FILE = "transcript.json"
#: An editor's correction of transcript.json (the engine's), kept beside it: every later
#: stage reads it instead, and a new transcription never overwrites it.
CORRECTED_TRANSCRIPT_FILE = "transcript.corrected.json"
ANALYSIS_FILE = "analysis.json"

_Record = TypeVar("_Record")


def transcript_path(workspace: Workspace, narrative_id: str) -> Path:
    return workspace.narrative_dir(narrative_id) / TRANSCRIPT_FILE


def analysis_path(workspace: Workspace, narrative_id: str) -> Path:
    return workspace.narrative_dir(narrative_id) / ANALYSIS_FILE


def corrected_transcript_path(workspace: Workspace, narrative_id: str) -> Path:
    return workspace.narrative_dir(narrative_id) / CORRECTED_TRANSCRIPT_FILE


def read_transcript(workspace: Workspace, narrative_id: str) -> Transcript | None:
    """The narrative's Transcript as the later stages use it: the editors' correction when
    there is one, else the engine's; None when it has not been transcribed."""
    corrected = _read(corrected_transcript_path(workspace, narrative_id), Transcript.from_dict)
    if corrected is not None:
        return corrected
    return read_original_transcript(workspace, narrative_id)


def read_original_transcript(workspace: Workspace, narrative_id: str) -> Transcript | None:
    """The engine's Transcript (transcript.json), whatever the editors corrected."""
    return _read(transcript_path(workspace, narrative_id), Transcript.from_dict)


def read_analysis(workspace: Workspace, narrative_id: str) -> Analysis | None:
    """The narrative's Analysis; None when it has not been analysed."""
    return _read(analysis_path(workspace, narrative_id), Analysis.from_dict)


def write_transcript(
    workspace: Workspace,
    narrative_id: str,
    transcript: Transcript,
    *,
    beside: Mapping[str, str] | None = None,
) -> Path:
    """Write transcript.json and the files made from it (`beside`: name -> text, such as its
    captions) so that all are replaced together or, on an error, none is."""
    path = transcript_path(workspace, narrative_id)
    files: dict[str, str | bytes] = {
        TRANSCRIPT_FILE: json.dumps(transcript.to_dict(), ensure_ascii=False, indent=1),
        **(beside or {}),
    }
    write_files_atomically(path.parent, files)
    return path


def write_corrected_transcript(
    workspace: Workspace,
    narrative_id: str,
    transcript: Transcript,
    *,
    beside: Mapping[str, str] | None = None,
) -> Path:
    """Write the editors' corrected transcript and the files made from it (its text and
    captions), all replaced together."""
    path = corrected_transcript_path(workspace, narrative_id)
    files: dict[str, str | bytes] = {
        CORRECTED_TRANSCRIPT_FILE: json.dumps(transcript.to_dict(), ensure_ascii=False, indent=1),
        **(beside or {}),
    }
    write_files_atomically(path.parent, files)
    return path


def remove_corrected_transcript(
    workspace: Workspace, narrative_id: str, *, beside: Mapping[str, str] | None = None
) -> bool:
    """Drop the editors' correction (the engine's transcript counts again) and rewrite the
    files made from the transcript (`beside`); False when there was none."""
    path = corrected_transcript_path(workspace, narrative_id)
    if not path.is_file():
        return False
    if beside:
        write_files_atomically(path.parent, dict(beside))
    path.unlink()
    return True


def write_analysis(workspace: Workspace, narrative_id: str, analysis: Analysis) -> Path:
    """Write analysis.json atomically (a failure leaves the previous file whole)."""
    path = analysis_path(workspace, narrative_id)
    atomic_write_json(path, analysis.to_dict())
    return path


def _read(path: Path, parse: Callable[[dict[str, Any]], _Record]) -> _Record | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UnreadableFile(
            f"{path}: cannot read: {exc}",
            hint="run `narrative process --force` on the recording to write it again",
        ) from exc
    if not isinstance(data, dict):
        raise UnreadableFile(f"{path}: cannot read: not a JSON object")
    try:
        return parse(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise UnreadableFile(f"{path}: cannot read: {type(exc).__name__}: {exc}") from exc
