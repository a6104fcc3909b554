"""Abstractive summaries with a local seq2seq model (optional: `analyse.summary_model`).

The extractive sentences stay beside the abstract, because the video and posts quote them
with times. transformers and torch are imported only here, when a summary model is named.
"""

from __future__ import annotations

from typing import Any

from narratives.core.errors import ModelNotAvailable

__all__ = ["abstractive_summary"]

_SEQ2SEQ: dict[str, tuple[Any, Any]] = {}


def _load_seq2seq(name: str) -> tuple[Any, Any]:
    if name in _SEQ2SEQ:
        return _SEQ2SEQ[name]
    # transformers (and torch) take seconds to import: only when a summary model is named.
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(
            f"summary model {name!r} is not installed here ({type(exc).__name__}), and this "
            "machine works offline",
            hint="put the model in the Hugging Face cache or a local folder (save_pretrained) "
            "and name it in narratives.toml [analyse] summary_model, or set summary_model = "
            '"" for extractive summaries',
        ) from None
    model.eval()
    _SEQ2SEQ[name] = (tokenizer, model)
    return tokenizer, model


def _max_input(tokenizer, model) -> int:
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 100_000:
        limits.append(tok_max)
    for attr in ("max_position_embeddings", "n_positions", "max_source_positions"):
        v = getattr(model.config, attr, None)
        if isinstance(v, int) and v > 0:
            limits.append(v)
    return min(limits) if limits else 512


def abstractive_summary(
    sentences: list[str], model_name: str, *, max_tokens: int = 80
) -> dict[str, Any]:
    """Summarise with a local seq2seq model: sentences are packed into chunks that fit the
    model's input, each chunk gets an equal share of `max_tokens`, and the parts are joined.

    Returns `{"text", "model", "chunks", "max_input", "generated_tokens"}`.
    """
    import torch  # heavy; loaded with the model above

    tokenizer, model = _load_seq2seq(model_name)
    limit = _max_input(tokenizer, model)
    specials = len(tokenizer("", add_special_tokens=True)["input_ids"])
    room = max(8, limit - specials)
    chunks: list[list[int]] = []
    current: list[int] = []
    for sentence in sentences:
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        # A sentence longer than the model's input is split by tokens.
        pieces = [ids[i : i + room] for i in range(0, len(ids), room)] or [[]]
        for piece in pieces:
            if current and len(current) + len(piece) > room:
                chunks.append(current)
                current = []
            current = current + piece
    if current:
        chunks.append(current)
    share = max(4, max_tokens // max(len(chunks), 1))
    parts, generated = [], 0
    with torch.inference_mode():
        for chunk in chunks:
            # Decoded and encoded again so the tokenizer adds its own special tokens.
            enc = tokenizer(
                tokenizer.decode(chunk), truncation=True, max_length=limit, return_tensors="pt"
            )
            input_ids = enc["input_ids"]
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=share,
                num_beams=1,
                do_sample=False,
            )
            new = out[0].tolist()
            if model.config.is_encoder_decoder:
                new = new[1:]  # the decoder start token is not generated text
            generated += len(new)
            parts.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return {
        "text": " ".join(p for p in parts if p),
        "model": model_name,
        "chunks": len(chunks),
        "max_input": limit,
        "generated_tokens": generated,
    }
