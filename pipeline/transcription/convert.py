"""Convert a CTranslate2 Whisper model into an openai-whisper checkpoint, without the network.

The packaged models are CTranslate2 directories; openai-whisper wants a ``torch.save``'d
``{"dims": ..., "model_state_dict": ...}``. The tensors are the same, only named and laid out
differently:

* CT2 fuses self-attention Q/K/V into ``self_attention/linear_0`` and cross-attention K/V into
  ``attention/linear_1``; they are split along the output axis into ``attn.query/key/value``.
  openai-whisper's key projection has no bias: CT2 stores a zero one, and any key bias would be
  a per-query constant that softmax cancels, so dropping it is exact.
* Layer norms are ``gamma``/``beta`` (``weight``/``bias``); heads counts and positional encodings
  are stored in ``model.bin`` itself.
* float16/bfloat16 weights become float32 (openai-whisper runs fp32 on CPU); int8/int16 weights
  are dequantized with their ``*_scale`` variables.

``model.bin`` layout (``ctranslate2/specs/model_spec.py``, ``_serialize``, binary version 6):
``u32 version, str spec_name, u32 revision, u32 n_variables, n_variables × (str name,
u8 rank, rank × u32 dim, u8 dtype_id, u32 n_bytes, bytes), u32 n_aliases, n_aliases × (str alias,
str target)`` where ``str`` is ``u16 length-including-NUL, utf-8 bytes, NUL``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.errors import ModelUnavailable
from pipeline.transcription.model_files import PACKAGED_MODELS, cache_lock, resolve_ct2_model

log = logging.getLogger(__name__)

# Order of ctranslate2's DataType enum (include/ctranslate2/types.h).
_CT2_DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_SUPPORTED_BINARY_VERSIONS = (6,)  # the layout in the module docstring
_GELU = 3  # ctranslate2 ActivationType::GELU, Whisper's activation
CONVERTED_DIR = "openai-whisper"

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Ct2Model:
    """The raw contents of a CTranslate2 ``model.bin``: named arrays and name aliases."""

    spec_name: str
    revision: int
    variables: dict[str, npt.NDArray[np.generic]]
    aliases: dict[str, str]
    storage_dtype: str
    """CT2 dtype of the largest variable (the token embedding): how the model is quantized."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def unpack(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize("<" + fmt)
        values = struct.unpack_from("<" + fmt, self._data, self._pos)
        self._pos += size
        return values

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = bytes(self._data[self._pos : self._pos + length])
        self._pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    def raw(self, size: int) -> memoryview:
        if self._pos + size > len(self._data):
            raise ValueError("model.bin is truncated")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos


def _as_numpy(raw: memoryview, dtype_id: int, shape: tuple[int, ...]) -> npt.NDArray[np.generic]:
    if dtype_id >= len(_CT2_DTYPES):
        raise ValueError(f"unsupported CTranslate2 dtype id {dtype_id}")
    name = _CT2_DTYPES[dtype_id]
    if name == "bfloat16":  # numpy has no bfloat16: widen the 16 bits into float32's top half
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(name).newbyteorder("<")).reshape(shape)


def read_ct2_model(model_bin: Path) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) into numpy arrays."""
    try:
        return _parse_ct2(_Reader(model_bin.read_bytes()), model_bin)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"{model_bin} is truncated or not a CTranslate2 model: {exc}") from exc


def _parse_ct2(reader: _Reader, model_bin: Path) -> Ct2Model:
    (version,) = reader.unpack("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise ValueError(f"{model_bin}: unsupported CTranslate2 binary version {version}")
    spec_name = reader.string()
    (revision,) = reader.unpack("I")
    (count,) = reader.unpack("I")
    variables: dict[str, npt.NDArray[np.generic]] = {}
    largest, storage_dtype = -1, "float32"
    for _ in range(count):
        name = reader.string()
        (rank,) = reader.unpack("B")
        shape = reader.unpack("I" * rank) if rank else ()
        dtype_id, n_bytes = reader.unpack("BI")
        variables[name] = _as_numpy(reader.raw(n_bytes), dtype_id, shape)
        if n_bytes > largest:
            largest, storage_dtype = n_bytes, _CT2_DTYPES[dtype_id]
    aliases: dict[str, str] = {}
    if reader.remaining:
        (n_aliases,) = reader.unpack("I")
        for _ in range(n_aliases):
            alias = reader.string()
            aliases[alias] = reader.string()
    return Ct2Model(spec_name, revision, variables, aliases, storage_dtype)


def dequantize(value: npt.NDArray[np.generic], scale: npt.NDArray[np.generic] | None) -> FloatArray:
    """float32 copy of a CT2 weight; integer weights are divided by their quantization scale.

    CT2 quantizes int8 per output row (``scale = 127 / max|row|``, conv weights flattened to
    rows) and int16 with one scalar scale, storing ``rint(weight * scale)``.
    """
    if np.issubdtype(value.dtype, np.integer):
        if scale is None:
            raise ValueError("integer weight without a quantization scale")
        factors = np.asarray(scale, dtype=np.float32)
        flat = value.reshape(value.shape[0], -1).astype(np.float32)
        if factors.ndim == 1:
            factors = factors[:, None]
        return (flat / factors).reshape(value.shape).astype(np.float32)
    return np.array(value, dtype=np.float32)


def _scalar(model: Ct2Model, name: str) -> int:
    return int(np.asarray(model.variables[name]).reshape(-1)[0])


def _tensor(model: Ct2Model, name: str) -> FloatArray:
    name = model.aliases.get(name, name)
    if name not in model.variables:
        raise ValueError(f"CTranslate2 model has no variable {name!r}; is it a Whisper model?")
    scale = model.variables.get(f"{name}_scale")
    return dequantize(model.variables[name], scale)


def _count_layers(model: Ct2Model, stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    found = {int(m.group(1)) for name in model.variables if (m := pattern.match(name))}
    return max(found) + 1 if found else 0


def whisper_dims(model: Ct2Model) -> dict[str, int]:
    """openai-whisper ``ModelDimensions`` read from the CT2 variables' shapes and scalars."""
    encoder_positions = model.variables["encoder/position_encodings/encodings"].shape
    decoder_positions = model.variables["decoder/position_encodings/encodings"].shape
    return {
        "n_mels": int(model.variables["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(encoder_positions[0]),
        "n_audio_state": int(encoder_positions[1]),
        "n_audio_head": _scalar(model, "encoder/num_heads"),
        "n_audio_layer": _count_layers(model, "encoder"),
        "n_vocab": int(model.variables["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(decoder_positions[0]),
        "n_text_state": int(decoder_positions[1]),
        "n_text_head": _scalar(model, "decoder/num_heads"),
        "n_text_layer": _count_layers(model, "decoder"),
    }


def _linear(model: Ct2Model, src: str, dst: str, out: dict[str, FloatArray]) -> None:
    out[f"{dst}.weight"] = _tensor(model, f"{src}/weight")
    out[f"{dst}.bias"] = _tensor(model, f"{src}/bias")


def _norm(model: Ct2Model, src: str, dst: str, out: dict[str, FloatArray]) -> None:
    out[f"{dst}.weight"] = _tensor(model, f"{src}/gamma")
    out[f"{dst}.bias"] = _tensor(model, f"{src}/beta")


def _split_linear(
    model: Ct2Model, src: str, dst: str, names: tuple[str, ...], out: dict[str, FloatArray]
) -> None:
    weights = np.split(_tensor(model, f"{src}/weight"), len(names), axis=0)
    biases = np.split(_tensor(model, f"{src}/bias"), len(names), axis=0)
    for name, weight, bias in zip(names, weights, biases, strict=True):
        out[f"{dst}.{name}.weight"] = np.ascontiguousarray(weight)
        if name != "key":  # openai-whisper: key = Linear(bias=False); see module docstring
            out[f"{dst}.{name}.bias"] = np.ascontiguousarray(bias)


def _block(model: Ct2Model, src: str, dst: str, cross: bool, out: dict[str, FloatArray]) -> None:
    _norm(model, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", out)
    _split_linear(
        model, f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"), out
    )
    _linear(model, f"{src}/self_attention/linear_1", f"{dst}.attn.out", out)
    if cross:
        _norm(model, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", out)
        _linear(model, f"{src}/attention/linear_0", f"{dst}.cross_attn.query", out)
        _split_linear(
            model, f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"), out
        )
        _linear(model, f"{src}/attention/linear_2", f"{dst}.cross_attn.out", out)
    _norm(model, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", out)
    _linear(model, f"{src}/ffn/linear_0", f"{dst}.mlp.0", out)
    _linear(model, f"{src}/ffn/linear_1", f"{dst}.mlp.2", out)


def openai_state_dict(model: Ct2Model) -> tuple[dict[str, int], dict[str, FloatArray]]:
    """(dims, state dict of float32 arrays) in openai-whisper's naming."""
    if model.spec_name != "WhisperSpec":
        raise ValueError(f"not a Whisper model: CTranslate2 spec is {model.spec_name!r}")
    if _scalar(model, "decoder/activation") != _GELU:
        raise ValueError("unexpected decoder activation; not an OpenAI Whisper architecture")
    dims = whisper_dims(model)
    out: dict[str, FloatArray] = {}
    for conv in ("conv1", "conv2"):
        _linear(model, f"encoder/{conv}", f"encoder.{conv}", out)
    out["encoder.positional_embedding"] = _tensor(model, "encoder/position_encodings/encodings")
    for i in range(dims["n_audio_layer"]):
        _block(model, f"encoder/layer_{i}", f"encoder.blocks.{i}", False, out)
    _norm(model, "encoder/layer_norm", "encoder.ln_post", out)
    out["decoder.token_embedding.weight"] = _tensor(model, "decoder/embeddings/weight")
    out["decoder.positional_embedding"] = _tensor(model, "decoder/position_encodings/encodings")
    for i in range(dims["n_text_layer"]):
        _block(model, f"decoder/layer_{i}", f"decoder.blocks.{i}", True, out)
    _norm(model, "decoder/layer_norm", "decoder.ln", out)
    return dims, out


def alignment_heads_dump(heads: list[list[int]], n_layers: int, n_heads: int) -> bytes:
    """Encode ``[[layer, head], ...]`` the way ``Whisper.set_alignment_heads`` decodes it."""
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


def metadata_path(checkpoint: Path) -> Path:
    """Sidecar JSON written after a conversion: source, alignment heads, checkpoint size."""
    return checkpoint.with_suffix(".json")


def read_metadata(checkpoint: Path) -> dict[str, object] | None:
    path = metadata_path(checkpoint)
    if not path.is_file():
        return None
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else None


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp makes 0600; other worker users must read the cache
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def convert_ct2_to_openai(ct2_dir: Path, out_file: Path) -> Path:
    """Write ``out_file`` (loadable by ``whisper.load_model``) plus its sidecar JSON.

    Both are written to temporary names and renamed, checkpoint first, so a reader that sees
    the JSON sees a complete checkpoint.
    """
    import torch
    from whisper.model import ModelDimensions, Whisper

    model_bin = ct2_dir / "model.bin"
    ct2 = read_ct2_model(model_bin)
    dims, arrays = openai_state_dict(ct2)
    state = {name: torch.from_numpy(array) for name, array in arrays.items()}
    # Fail here, not at load time, when the names or shapes do not fit openai-whisper.
    Whisper(ModelDimensions(**dims)).load_state_dict(state, strict=True)
    config_file = ct2_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_file, lambda tmp: torch.save({"dims": dims, "model_state_dict": state}, tmp))
    source_stat = model_bin.stat()
    metadata = {
        "source": str(model_bin.resolve()),
        "source_size": source_stat.st_size,
        "source_mtime_ns": source_stat.st_mtime_ns,
        "source_dtype": ct2.storage_dtype,
        "checkpoint_size": out_file.stat().st_size,
        "dims": dims,
        "alignment_heads": config.get("alignment_heads", []),
    }
    _atomic_write(
        metadata_path(out_file),
        lambda tmp: tmp.write_text(json.dumps(metadata, indent=2), encoding="utf-8"),
    )
    log.info(
        "converted %s (%s) into openai-whisper checkpoint %s", ct2_dir, ct2.storage_dtype, out_file
    )
    return out_file


def _is_current(checkpoint: Path, model_bin: Path) -> bool:
    """A finished conversion of exactly this source file (same path, size and mtime)."""
    metadata = read_metadata(checkpoint)
    if metadata is None or not checkpoint.is_file():
        return False
    stat = model_bin.stat()
    return (
        metadata.get("source") == str(model_bin.resolve())
        and metadata.get("source_size") == stat.st_size
        and metadata.get("source_mtime_ns") == stat.st_mtime_ns
        and metadata.get("checkpoint_size") == checkpoint.stat().st_size
    )


def _checkpoint_name(name: str, ct2_dir: Path) -> str:
    if name in PACKAGED_MODELS:
        return name
    digest = hashlib.sha256(str(ct2_dir.resolve()).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', ct2_dir.name)}-{digest}"


def ensure_openai_checkpoint(name: str, cache_dir: Path, hub_downloads: bool) -> Path:
    """An openai-whisper checkpoint for ``name``, converted once into the cache and reused.

    ``name`` is resolved like :func:`resolve_ct2_model` (packaged name, local CT2 directory,
    or a hub name when ``hub_downloads``); an existing file is taken as an openai-whisper
    checkpoint already. Conversion runs under a file lock, so concurrent workers convert once.
    """
    if Path(name).expanduser().is_file():
        path = Path(name).expanduser().resolve()
        log.info("openai-whisper checkpoint %s: local file, offline", path)
        return path
    resolved, origin = resolve_ct2_model(name, cache_dir, hub_downloads)
    ct2_dir = _download_ct2(resolved, cache_dir) if isinstance(resolved, str) else resolved
    target = cache_dir / CONVERTED_DIR / f"{_checkpoint_name(name, ct2_dir)}.pt"
    model_bin = ct2_dir / "model.bin"
    if not _is_current(target, model_bin):
        with cache_lock(cache_dir, f"{CONVERTED_DIR}-{target.stem}"):
            if not _is_current(target, model_bin):
                log.info("converting %s for openai-whisper (one-off)", origin)
                convert_ct2_to_openai(ct2_dir, target)
    log.info("openai-whisper checkpoint for %r: %s (from %s)", name, target, origin)
    return target


def _download_ct2(hub_name: str, cache_dir: Path) -> Path:
    """Only reached with TELEAI_HUB_DOWNLOADS=true: fetch a CT2 Whisper model from the hub."""
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(hub_name, cache_dir=str(cache_dir / "hub")))
    except Exception as exc:  # huggingface_hub raises many types; all mean "not available"
        raise ModelUnavailable(f"could not download Whisper model {hub_name!r}: {exc}") from exc
