"""resemblyzer's voice encoder in numpy: the same weights and the same arithmetic, without torch.

The diarizer (:mod:`pipeline.transcription.diarize`) needs one small network: resemblyzer's
``VoiceEncoder``, a 3-layer LSTM (40 mel channels in, 256 hidden) whose last hidden state goes
through a 256x256 linear layer, a ReLU and an L2 normalisation. Running it through torch meant
importing torch in every transcription worker, seconds of a cold start before the first file
(``import torch`` alone took 2-7 s on the shared two-core machine; bench ``coldstart``), for
about 1.4 million weights. Here the forward pass is a few numpy lines (float32, the gate order
and equations of ``torch.nn.LSTM``), and the weights are read from the ``pretrained.pt`` that
the resemblyzer wheel ships, without torch: the file is a torch checkpoint (a pickle whose
tensors point at raw storages), so a restricted unpickler that knows only the few globals a
tensor checkpoint uses (:func:`read_torch_checkpoint`) turns the tensors into numpy arrays.
Nothing is converted or cached on disk, and nothing else in a pickle can run.

tests/test_voice_encoder.py checks the embeddings against resemblyzer's torch encoder on real
speech (equal within 1e-4) and the reader against ``torch.load``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import ModelUnavailable

N_MELS = 40  # resemblyzer.hparams.mel_n_channels
HIDDEN = 256  # model_hidden_size (and model_embedding_size)
LAYERS = 3  # model_num_layers
WEIGHTS = "pretrained.pt"

Array = npt.NDArray[np.float32]

# --- reading a torch checkpoint without torch -------------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


@dataclass
class _Storage:
    """A storage the pickle refers to; its bytes are read after the pickle (legacy format)."""

    dtype: np.dtype[Any]
    numel: int
    data: npt.NDArray[Any] | None = None


@dataclass(frozen=True)
class _Tensor:
    """A tensor as the pickle describes it; turned into an array once the storages are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> npt.NDArray[Any]:
        data = self.storage.data
        if data is None:
            raise ValueError("checkpoint: a tensor's storage was never read")
        if not self.size:
            return data[self.offset : self.offset + 1].reshape(()).copy()
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _Tensor:
    return _Tensor(storage, int(offset), tuple(size), tuple(stride))


class _CheckpointUnpickler(pickle.Unpickler):
    """Knows the globals of a checkpoint of plain tensors (``OrderedDict``, the storage types,
    ``torch._utils._rebuild_tensor[_v2]``) and refuses every other one, so loading the file can
    run no code (which ``pickle.load`` of an untrusted file could)."""

    def __init__(self, file: IO[bytes], storage: Callable[[tuple[Any, ...]], _Storage]) -> None:
        super().__init__(file)
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"checkpoint: refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise pickle.UnpicklingError(f"checkpoint: unexpected persistent id {kind!r}")
        return self._storage(tuple(pid[1:]))


def read_torch_checkpoint(path: Path) -> Any:
    """``torch.load(path, map_location="cpu")`` for a checkpoint of plain CPU tensors, with the
    tensors as numpy arrays: both formats ``torch.save`` writes (the zip archive of torch 1.6
    and later; the older single stream, which resemblyzer's ``pretrained.pt`` is)."""
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    with path.open("rb") as f:
        return _read_legacy(f)


def _read_legacy(f: IO[bytes]) -> Any:
    if pickle.load(f) != _LEGACY_MAGIC:  # noqa: S301  # an int; the object goes below
        raise ValueError("checkpoint: not a torch file")
    pickle.load(f)  # noqa: S301  # protocol version
    info = pickle.load(f)  # noqa: S301  # system info: byte order, type sizes
    if isinstance(info, dict) and not info.get("little_endian", True):
        raise ValueError("checkpoint: big-endian files are not supported")
    storages: dict[str, _Storage] = {}

    def storage(args: tuple[Any, ...]) -> _Storage:
        storage_type, key, _location, numel, view = args
        if view is not None:
            raise pickle.UnpicklingError("checkpoint: storage views are not supported")
        if key not in storages:
            storages[key] = _Storage(storage_type.dtype, int(numel))
        return storages[key]

    result = _CheckpointUnpickler(f, storage).load()
    for key in pickle.load(f):  # noqa: S301  # a list of storage keys, in file order
        entry = storages[key]
        numel = int(np.frombuffer(f.read(8), dtype="<i8")[0])
        data = f.read(numel * entry.dtype.itemsize)
        if numel != entry.numel or len(data) != numel * entry.dtype.itemsize:
            raise ValueError("checkpoint: truncated storage")
        entry.data = np.frombuffer(data, dtype=entry.dtype)
    return _resolve(result)


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        (pickled,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        prefix = pickled[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}

        def storage(args: tuple[Any, ...]) -> _Storage:
            storage_type, key, _location, numel = args[:4]
            if key not in storages:
                raw = archive.read(f"{prefix}data/{key}")
                dtype = storage_type.dtype
                storages[key] = _Storage(dtype, int(numel), np.frombuffer(raw, dtype=dtype))
            return storages[key]

        result = _CheckpointUnpickler(io.BytesIO(archive.read(pickled)), storage).load()
    return _resolve(result)


def _resolve(value: Any) -> Any:
    if isinstance(value, _Tensor):
        return value.array()
    if isinstance(value, dict):
        return type(value)((k, _resolve(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_resolve(v) for v in value)
    return value


# --- the encoder ------------------------------------------------------------------------------


def weights_path() -> Path:
    """The ``pretrained.pt`` of the installed resemblyzer wheel (found without importing
    resemblyzer, whose ``__init__`` imports torch and librosa)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "speaker diarization needs resemblyzer's voice-encoder weights: pip install "
            "webrtcvad-wheels && pip install --no-deps resemblyzer (scripts/setup.sh does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS
    if not path.is_file():
        raise ModelUnavailable(f"resemblyzer's voice-encoder weights are missing: {path}")
    return path


def _sigmoid(x: Array) -> Array:
    """The logistic function through tanh: no overflow for large negative inputs."""
    out: Array = np.tanh(x * np.float32(0.5))
    out += np.float32(1.0)
    out *= np.float32(0.5)
    return out


class VoiceEncoder:
    """``resemblyzer.VoiceEncoder.forward`` in numpy: mel frames ``(batch, frames, 40)`` in,
    L2-normalised 256-d embeddings out."""

    def __init__(self, state: dict[str, Any]) -> None:
        def weight(name: str) -> Array:
            return np.ascontiguousarray(state[name], dtype=np.float32)

        self.layers: list[tuple[Array, Array, Array]] = []
        for layer in range(LAYERS):
            w_ih, w_hh = weight(f"lstm.weight_ih_l{layer}"), weight(f"lstm.weight_hh_l{layer}")
            bias = weight(f"lstm.bias_ih_l{layer}") + weight(f"lstm.bias_hh_l{layer}")
            # Transposed once, so every step is a (batch, in) @ (in, 4H) product.
            self.layers.append((np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T), bias))
        self.linear_w = np.ascontiguousarray(weight("linear.weight").T)
        self.linear_b = weight("linear.bias")
        if self.layers[0][0].shape != (N_MELS, 4 * HIDDEN):
            raise ValueError("voice encoder: unexpected weight shapes")

    @classmethod
    def from_file(cls, path: Path) -> VoiceEncoder:
        checkpoint = read_torch_checkpoint(path)
        return cls(checkpoint["model_state"])

    def __call__(self, mels: Array) -> Array:
        x = np.ascontiguousarray(np.transpose(mels, (1, 0, 2)), dtype=np.float32)  # (T, B, in)
        frames, batch, _ = x.shape
        h = np.zeros((batch, HIDDEN), dtype=np.float32)
        for index, (w_ih, w_hh, bias) in enumerate(self.layers):
            # The input part of every step's gates at once; only h @ w_hh is sequential.
            gates_in = (x.reshape(frames * batch, -1) @ w_ih).reshape(frames, batch, -1)
            gates_in += bias
            last = index == LAYERS - 1
            out = None if last else np.empty((frames, batch, HIDDEN), dtype=np.float32)
            h = np.zeros((batch, HIDDEN), dtype=np.float32)
            c = np.zeros((batch, HIDDEN), dtype=np.float32)
            for t in range(frames):
                gates = gates_in[t] + h @ w_hh
                # torch.nn.LSTM's gate order: input, forget, cell (g), output.
                i = _sigmoid(gates[:, :HIDDEN])
                f = _sigmoid(gates[:, HIDDEN : 2 * HIDDEN])
                g = np.tanh(gates[:, 2 * HIDDEN : 3 * HIDDEN])
                o = _sigmoid(gates[:, 3 * HIDDEN :])
                c = f * c + i * g
                h = o * np.tanh(c)
                if out is not None:
                    out[t] = h
            if out is not None:
                x = out
        raw = np.maximum(h @ self.linear_w + self.linear_b, np.float32(0.0))
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        embeds: Array = (raw / norms).astype(np.float32)
        return embeds


@lru_cache(maxsize=1)
def load_voice_encoder() -> VoiceEncoder:
    """The voice encoder, once per process, from the installed resemblyzer wheel's weights."""
    return VoiceEncoder.from_file(weights_path())


@lru_cache(maxsize=1)
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the encoder's matrix products on one BLAS thread: its small LSTM gains little from
    more, and threads spinning beside the Whisper decoder on a busy CPU made the torch encoder
    ten times slower (measured: 71 windows 1.8 s on one thread, 12-27 s on two under load)."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
