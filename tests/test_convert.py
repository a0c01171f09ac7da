"""CTranslate2 → openai-whisper conversion: format parsing, dequantization, real transcription."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
from ctranslate2 import specs
from faster_whisper.audio import decode_audio

from bench.wer import word_error_rate
from pipeline.transcription.convert import (
    convert_ct2_to_openai,
    dequantize,
    ensure_openai_checkpoint,
    metadata_path,
    openai_state_dict,
    read_ct2_model,
)
from pipeline.transcription.model_files import tiny_en_dir
from tests.speech import speech_file

SENTENCE = (
    "Please send the quarterly report to the finance team before Friday afternoon. "
    "Our customer called this morning because the new phone would not turn on."
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    wav = speech_file(SENTENCE, "wav", tmp_path_factory.mktemp("speech"))
    return np.asarray(decode_audio(str(wav), sampling_rate=16000), dtype=np.float32)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def test_packaged_tiny_en_is_float16_whisper() -> None:
    model = read_ct2_model(tiny_en_dir() / "model.bin")
    assert model.spec_name == "WhisperSpec"
    assert model.storage_dtype == "float16"
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    dims, state = openai_state_dict(model)
    assert dims == {
        "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
        "n_audio_layer": 4, "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384,
        "n_text_head": 6, "n_text_layer": 4,
    }  # fmt: skip
    assert all(array.dtype == np.float32 for array in state.values())
    assert "decoder.blocks.0.cross_attn.key.bias" not in state
    assert state["decoder.blocks.0.cross_attn.key.weight"].shape == (384, 384)
    assert state["encoder.blocks.3.attn.value.weight"].shape == (384, 384)


def test_dequantize_undoes_ctranslate2_int8_quantization() -> None:
    rng = np.random.default_rng(0)
    linear = specs.common_spec.LinearSpec()
    weight = rng.normal(0, 0.05, size=(64, 32)).astype(np.float32)
    linear.weight = weight.copy()  # the quantizer scales its input in place
    linear.bias = np.zeros(64, dtype=np.float32)
    linear.validate()
    linear.optimize(quantization="int8")  # ctranslate2's own quantizer
    quantized, scale = linear.weight.numpy(), linear.weight_scale.numpy()
    assert quantized.dtype == np.int8
    restored = dequantize(quantized, scale)
    assert restored.dtype == np.float32
    step = np.abs(weight).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(restored - weight) <= step / 2 + 1e-7)


def test_dequantize_widens_float16_and_needs_a_scale_for_integers() -> None:
    half = np.array([[0.5, -1.25]], dtype=np.float16)
    assert dequantize(half, None).dtype == np.float32
    with pytest.raises(ValueError, match="scale"):
        dequantize(np.array([[1, 2]], dtype=np.int8), None)


def test_converted_tiny_en_transcribes_with_openai_whisper(
    cache_dir: Path, speech: np.ndarray
) -> None:
    checkpoint = ensure_openai_checkpoint("tiny.en", cache_dir, hub_downloads=False)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert set(raw) == {"dims", "model_state_dict"}
    model = whisper.load_model(str(checkpoint), device="cpu")
    result = model.transcribe(speech, language="en", fp16=False, condition_on_previous_text=False)
    wer = word_error_rate(SENTENCE, str(result["text"]))
    print(f"openai-whisper on converted tiny.en: WER={wer:.3f} text={result['text']!r}")
    assert wer <= 0.15


def test_conversion_is_reused(cache_dir: Path) -> None:
    first = ensure_openai_checkpoint("tiny.en", cache_dir, hub_downloads=False)
    stamp = first.stat().st_mtime_ns
    second = ensure_openai_checkpoint("tiny.en", cache_dir, hub_downloads=False)
    assert second == first
    assert second.stat().st_mtime_ns == stamp
    metadata = json.loads(metadata_path(first).read_text())
    assert metadata["source_dtype"] == "float16"
    assert metadata["alignment_heads"]
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temp files


def _int8_copy_of_tiny_en(out: Path) -> Path:
    """Re-save packaged tiny.en as an int8 CTranslate2 model with ctranslate2's own writer."""
    source = tiny_en_dir()
    model = read_ct2_model(source / "model.bin")
    spec = specs.WhisperSpec(4, 6, 4, 6)
    for name, value in [
        *model.variables.items(),
        *((a, model.variables[t]) for a, t in model.aliases.items()),
    ]:
        if value.ndim == 0:
            continue
        target: object = spec
        parts = name.split("/")
        for part in parts[:-1]:
            match = re.fullmatch(r"(.+)_(\d+)", part)
            if match and isinstance(getattr(target, match.group(1), None), list):
                target = getattr(target, match.group(1))[int(match.group(2))]
            else:
                target = getattr(target, part)
        setattr(target, parts[-1], np.array(value, dtype=np.float32))
    spec.register_vocabulary((source / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    for key, value in config.items():
        setattr(spec.config, key, value)
    spec.validate()
    spec.optimize(quantization="int8")
    out.mkdir()
    spec.save(str(out))
    shutil.copy(source / "tokenizer.json", out)
    return out


def test_int8_model_is_dequantized_and_still_transcribes(
    tmp_path: Path, speech: np.ndarray
) -> None:
    int8_dir = _int8_copy_of_tiny_en(tmp_path / "tiny-int8")
    assert read_ct2_model(int8_dir / "model.bin").storage_dtype == "int8"
    checkpoint = convert_ct2_to_openai(int8_dir, tmp_path / "tiny-int8.pt")
    model = whisper.load_model(str(checkpoint), device="cpu")
    result = model.transcribe(speech, language="en", fp16=False, condition_on_previous_text=False)
    wer = word_error_rate(SENTENCE, str(result["text"]))
    print(f"openai-whisper on dequantized int8 tiny.en: WER={wer:.3f} text={result['text']!r}")
    assert wer <= 0.15


def test_truncated_or_foreign_files_are_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"\x06\x00\x00\x00garbage")
    with pytest.raises(ValueError, match="truncated"):
        read_ct2_model(bogus)
    bogus.write_bytes(b"\x02\x00\x00\x00")
    with pytest.raises(ValueError, match="binary version 2"):
        read_ct2_model(bogus)
