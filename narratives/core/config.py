"""Settings from `narratives.toml`, validated at the edge with pydantic (unknown keys refused).

Each stage owns one section. A missing file means all defaults; a bad key or value is a
`ConfigError` that names the file and the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from narratives.core.errors import ConfigError
from narratives.core.workspace import Workspace

__all__ = ["Settings", "load_settings", "format_validation_error"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Section):
    #: Any SQLAlchemy URL; empty means SQLite in the workspace (`narratives.db`).
    url: str = ""


class TranscribeSettings(_Section):
    engine: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    #: A shipped model name (`tiny.en`, `base`), a standard Whisper size, or a local path.
    model: str = "tiny.en"
    #: Empty means detect (multilingual models) or English (`.en` models).
    language: str = ""
    compute_type: str = "int8"
    beam_size: int = Field(5, ge=1, le=10)
    vad: bool = True
    word_timestamps: bool = True
    #: Threads per worker; more than one thread per worker thrashes on small machines.
    threads: int = Field(1, ge=1, le=64)
    #: Recordings shorter than this hold no usable speech.
    min_duration: float = Field(0.5, ge=0)


class AnalyseSettings(_Section):
    embedding_model: str = "all-MiniLM-L6-v2"
    #: A Hugging Face seq2seq summariser id or path; empty means extractive summaries.
    summary_model: str = ""
    summary_sentences: int = Field(2, ge=1, le=3)
    #: Upper bound on the abstractive summary's length, in generated tokens.
    summary_max_tokens: int = Field(80, ge=8, le=1024)
    #: Torch threads per worker; more than one thrashes on small shared machines.
    threads: int = Field(1, ge=1, le=64)
    #: Content notes, each {name, description, examples}; empty means the shipped defaults
    #: (see `narratives.stages.analyse.content_notes.DEFAULT_CONTENT_NOTES`).
    #: Validated by the analyse stage.
    content_notes: list[dict[str, str | bool | list[str]]] = []
    #: A content note scoring at least this is flagged for editors.
    content_note_threshold: float = Field(0.45, ge=0, le=1)


class RenderSettings(_Section):
    enabled: bool = True
    fps: int = Field(30, ge=1, le=60)
    preset: str = "veryfast"
    #: Scale factor on the 1080-wide frame (tests and previews render smaller).
    scale: float = Field(1.0, gt=0, le=1)
    #: Encoder threads per render; 0 means the cores shared out among `process --workers`.
    threads: int = Field(0, ge=0, le=64)


class ServeSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    #: Public base URL used in feeds and post links.
    base_url: str = "http://127.0.0.1:8765"
    #: Mark the session cookie Secure: turn on when the page is served over HTTPS.
    secure_cookies: bool = False


class SchedulerSettings(_Section):
    #: Deliveries this much overdue when the scheduler wakes are marked missed.
    missed_after_hours: float = Field(24.0, gt=0)
    max_attempts: int = Field(8, ge=1)


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    transcribe: TranscribeSettings = TranscribeSettings()
    analyse: AnalyseSettings = AnalyseSettings()
    render: RenderSettings = RenderSettings()
    serve: ServeSettings = ServeSettings()
    scheduler: SchedulerSettings = SchedulerSettings()


def format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid settings"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def load_settings(workspace: Workspace) -> Settings:
    path = workspace.settings_path
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from exc
