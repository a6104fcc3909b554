"""Run the shipped CTranslate2 Whisper weights in openai-whisper by converting them once.

The only offline Whisper weights here are CTranslate2 folders (MODELS.md). openai-whisper's
`load_model(path)` takes a `torch.save`d `{"dims", "model_state_dict"}` checkpoint, so this
module reads `model.bin` (binary version 6) itself with numpy, renames the variables to
openai-whisper's names, widens float16/int8 to float32, and caches the `.pt` under the
source's SHA-256 so the conversion (seconds) happens once per machine. Word timestamps need
the model's alignment heads, which `load_model` leaves at a default for local files: they
come from the folder's `config.json`.
"""

from __future__ import annotations

import base64
import gzip
import json
import mmap
import os
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from narratives.core.errors import ModelNotAvailable

if TYPE_CHECKING:
    import whisper

__all__ = [
    "CT2Model",
    "read_ct2_model",
    "to_openai_checkpoint",
    "convert",
    "converted_checkpoint",
    "load_openai_model",
    "set_alignment_heads",
]

_SUPPORTED_VERSION = 6
_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    # 5 (bfloat16) has no numpy dtype: read as uint16 and widened by hand.
    5: np.dtype("<u2"),
}
_BFLOAT16 = 5
#: Bumped when the conversion changes, so stale cached checkpoints are not reused.
_CONVERTER_VERSION = 1


@dataclass
class CT2Model:
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]


class _Reader:
    def __init__(self, buf: Any, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ModelNotAvailable(f"{self.path}: truncated CTranslate2 model file")
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        raw = bytes(self.take(self.u16()))
        return raw.rstrip(b"\0").decode("utf-8")


def _bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_ct2_model(path: str | os.PathLike[str]) -> CT2Model:
    """Read a CTranslate2 `model.bin`; arrays are float32 copies (int scalars stay ints)."""
    path = Path(path)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        r = _Reader(mm, path)
        version = r.u32()
        if version != _SUPPORTED_VERSION:
            raise ModelNotAvailable(
                f"{path}: CTranslate2 binary version {version}, only {_SUPPORTED_VERSION} is read",
                hint="re-convert the model with a CTranslate2 4.x converter",
            )
        spec, revision = r.string(), r.u32()
        variables: dict[str, np.ndarray] = {}
        raw = np.empty(0)
        for _ in range(r.u32()):
            name = r.string()
            shape = tuple(r.u32() for _ in range(r.u8()))
            dtype_id = r.u8()
            nbytes = r.u32()
            if dtype_id not in _DTYPES:
                raise ModelNotAvailable(f"{path}: unknown dtype {dtype_id} for {name}")
            raw = np.frombuffer(r.take(nbytes), dtype=_DTYPES[dtype_id]).reshape(shape)
            if dtype_id == _BFLOAT16:
                array = _bfloat16_to_float32(raw)
            elif raw.dtype.kind == "f":
                array = raw.astype(np.float32)  # always a copy, so the mmap can close
            else:
                array = raw.copy()
            variables[name] = array
        aliases = {}
        if r.pos < len(mm):
            for _ in range(r.u32()):
                alias = r.string()
                aliases[alias] = r.string()
        del raw  # release the last view into the mmap before it closes
    return CT2Model(spec, revision, variables, aliases)


def _weight(model: CT2Model, name: str) -> np.ndarray:
    """A float32 weight, dequantized when CTranslate2 stored it as int8 with a scale."""
    w = model.get(name)
    scale_name = name[: -len("weight")] + "weight_scale"
    if w.dtype.kind == "i" and scale_name in model.variables:
        scale = model.get(scale_name).astype(np.float32)
        return w.astype(np.float32) / scale.reshape(-1, *([1] * (w.ndim - 1)))
    return w.astype(np.float32, copy=False)


def _layers(model: CT2Model, prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    found = {int(m.group(1)) for n in model.variables if (m := pattern.match(n))}
    return max(found) + 1 if found else 0


def _scalar(model: CT2Model, name: str) -> int:
    return int(np.asarray(model.get(name)).reshape(-1)[0])


def _dims(model: CT2Model) -> dict[str, int]:
    conv1 = model.get("encoder/conv1/weight")
    embeddings = model.get("decoder/embeddings/weight")
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(model.get("encoder/position_encodings/encodings").shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": _scalar(model, "encoder/num_heads"),
        "n_audio_layer": _layers(model, "encoder"),
        "n_vocab": int(embeddings.shape[0]),
        "n_text_ctx": int(model.get("decoder/position_encodings/encodings").shape[0]),
        "n_text_state": int(embeddings.shape[1]),
        "n_text_head": _scalar(model, "decoder/num_heads"),
        "n_text_layer": _layers(model, "decoder"),
    }


def _linear(sd: dict, model: CT2Model, src: str, dst: str, *, bias: bool = True) -> None:
    sd[f"{dst}.weight"] = _weight(model, f"{src}/weight")
    if bias:
        sd[f"{dst}.bias"] = model.get(f"{src}/bias")


def _norm(sd: dict, model: CT2Model, src: str, dst: str) -> None:
    sd[f"{dst}.weight"] = model.get(f"{src}/gamma")
    sd[f"{dst}.bias"] = model.get(f"{src}/beta")


def _split_linear(
    sd: dict, model: CT2Model, src: str, dsts: list[str], no_bias: frozenset[str]
) -> None:
    """CTranslate2 fuses q/k/v (or k/v) projections along dim 0; openai-whisper keeps them apart."""
    weights = np.split(_weight(model, f"{src}/weight"), len(dsts))
    biases = np.split(model.get(f"{src}/bias"), len(dsts))
    for dst, w, b in zip(dsts, weights, biases, strict=True):
        sd[f"{dst}.weight"] = w
        if dst.rsplit(".", 1)[-1] not in no_bias:
            sd[f"{dst}.bias"] = b


_NO_KEY_BIAS = frozenset({"key"})


def _block(sd: dict, model: CT2Model, src: str, dst: str, *, cross: bool) -> None:
    attn = f"{src}/self_attention"
    _split_linear(
        sd,
        model,
        f"{attn}/linear_0",
        [f"{dst}.attn.{n}" for n in ("query", "key", "value")],
        _NO_KEY_BIAS,
    )  # noqa: E501
    _linear(sd, model, f"{attn}/linear_1", f"{dst}.attn.out")
    _norm(sd, model, f"{attn}/layer_norm", f"{dst}.attn_ln")
    if cross:
        xattn = f"{src}/attention"
        _linear(sd, model, f"{xattn}/linear_0", f"{dst}.cross_attn.query")
        _split_linear(
            sd,
            model,
            f"{xattn}/linear_1",
            [f"{dst}.cross_attn.{n}" for n in ("key", "value")],
            _NO_KEY_BIAS,
        )  # noqa: E501
        _linear(sd, model, f"{xattn}/linear_2", f"{dst}.cross_attn.out")
        _norm(sd, model, f"{xattn}/layer_norm", f"{dst}.cross_attn_ln")
    _linear(sd, model, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
    _linear(sd, model, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    _norm(sd, model, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")


def to_openai_checkpoint(model: CT2Model) -> dict[str, Any]:
    """The `{"dims", "model_state_dict"}` dict that `whisper.load_model(path)` expects."""
    import torch

    if model.spec != "WhisperSpec":
        raise ModelNotAvailable(f"not a Whisper model: CTranslate2 spec {model.spec!r}")
    dims = _dims(model)
    sd: dict[str, np.ndarray] = {}
    for i in ("conv1", "conv2"):
        _linear(sd, model, f"encoder/{i}", f"encoder.{i}")
    sd["encoder.positional_embedding"] = model.get("encoder/position_encodings/encodings")
    for i in range(dims["n_audio_layer"]):
        _block(sd, model, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    _norm(sd, model, "encoder/layer_norm", "encoder.ln_post")
    sd["decoder.token_embedding.weight"] = _weight(model, "decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = model.get("decoder/position_encodings/encodings")
    for i in range(dims["n_text_layer"]):
        _block(sd, model, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    _norm(sd, model, "decoder/layer_norm", "decoder.ln")
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}
    return {"dims": dims, "model_state_dict": state}


def convert(model_dir: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Write an openai-whisper checkpoint for a CTranslate2 Whisper folder (atomically)."""
    import torch

    model_dir, out_path = Path(model_dir), Path(out_path)
    checkpoint = to_openai_checkpoint(read_ct2_model(model_dir / "model.bin"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def converted_checkpoint(model_dir: str | os.PathLike[str], sha256: str, cache_dir: Path) -> Path:
    """The cached `.pt` for a folder whose `model.bin` has this SHA-256; converts on a miss."""
    out = cache_dir / "openai-whisper" / f"{sha256[:24]}-v{_CONVERTER_VERSION}.pt"
    if out.is_file() and out.stat().st_size > 0:
        return out
    return convert(model_dir, out)


def _alignment_heads(model_dir: Path) -> list[tuple[int, int]]:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [(int(layer), int(head)) for layer, head in config.get("alignment_heads") or []]


def set_alignment_heads(model: whisper.Whisper, heads: list[tuple[int, int]]) -> None:
    """Mark the cross-attention heads used to time words, through openai-whisper's own API."""
    dims = model.dims
    mask = np.zeros((dims.n_text_layer, dims.n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    model.set_alignment_heads(base64.b85encode(gzip.compress(mask.tobytes())))


def load_openai_model(
    model_dir: str | os.PathLike[str], sha256: str, cache_dir: Path, device: str = "cpu"
) -> whisper.Whisper:
    """openai-whisper model for a CTranslate2 folder: convert once, load, set alignment heads."""
    import whisper

    model_dir = Path(model_dir)
    model = whisper.load_model(str(converted_checkpoint(model_dir, sha256, cache_dir)), device)
    if heads := _alignment_heads(model_dir):
        set_alignment_heads(model, heads)
    return model
