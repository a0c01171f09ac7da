"""Model resolution: packaged models offline, base assembled once and race-safe, clear errors."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pipeline.errors import ModelUnavailable, PermanentError
from pipeline.settings import Settings
from pipeline.transcription import get_transcriber
from pipeline.transcription.model_files import (
    BASE_DIR_NAME,
    assemble_base,
    base_parts,
    resolve_ct2_model,
    tiny_en_dir,
)


def test_tiny_en_is_the_packaged_ct2_directory(tmp_path: Path) -> None:
    path, origin = resolve_ct2_model("tiny.en", tmp_path, hub_downloads=False)
    assert isinstance(path, Path)
    assert path == tiny_en_dir()
    assert {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"} <= {
        p.name for p in path.iterdir()
    }
    assert "offline" in origin
    assert list(tmp_path.iterdir()) == []  # nothing copied for a ready-made package


def test_base_is_assembled_once_and_reused(tmp_path: Path) -> None:
    _, part1, part2 = base_parts()
    path, origin = resolve_ct2_model("base", tmp_path, hub_downloads=False)
    assert path == tmp_path / BASE_DIR_NAME
    assert "offline" in origin
    model_bin = tmp_path / BASE_DIR_NAME / "model.bin"
    assert model_bin.stat().st_size == part1.stat().st_size + part2.stat().st_size
    with model_bin.open("rb") as assembled, part2.open("rb") as second:
        assembled.seek(part1.stat().st_size)
        assert assembled.read(4096) == second.read(4096)  # part2 follows part1 byte for byte
    before = model_bin.stat()
    again, _ = resolve_ct2_model("base", tmp_path, hub_downloads=False)
    after = model_bin.stat()
    assert again == path
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [BASE_DIR_NAME]


def test_incomplete_base_is_rebuilt(tmp_path: Path) -> None:
    broken = tmp_path / BASE_DIR_NAME
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"half a model")
    path = assemble_base(tmp_path)
    _, part1, part2 = base_parts()
    assert (path / "model.bin").stat().st_size == part1.stat().st_size + part2.stat().st_size


def test_concurrent_processes_assemble_base_safely(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        results = list(pool.map(assemble_base, [tmp_path, tmp_path]))
    assert results == [tmp_path / BASE_DIR_NAME] * 2
    _, part1, part2 = base_parts()
    assert (results[0] / "model.bin").stat().st_size == part1.stat().st_size + part2.stat().st_size
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != BASE_DIR_NAME]
    assert all(name.endswith(".lock") for name in leftovers), leftovers


def test_local_directory_is_used_as_is(tmp_path: Path) -> None:
    path, origin = resolve_ct2_model(str(tiny_en_dir()), tmp_path, hub_downloads=False)
    assert path == tiny_en_dir().resolve()
    assert "local directory" in origin


def test_directory_without_model_bin_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match=r"model\.bin"):
        resolve_ct2_model(str(empty), tmp_path, hub_downloads=False)


def test_unknown_name_without_hub_downloads_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as caught:
        resolve_ct2_model("large-v3-turbo-nonexistent", tmp_path, hub_downloads=False)
    assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert "TELEAI_HUB_DOWNLOADS=true" in message
    assert "pip install" in message
    assert isinstance(caught.value, PermanentError)


def test_unknown_name_with_hub_downloads_is_passed_through(tmp_path: Path) -> None:
    path, origin = resolve_ct2_model("Systran/faster-whisper-small", tmp_path, hub_downloads=True)
    assert path == "Systran/faster-whisper-small"
    assert "hub" in origin


@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
def test_factory_refuses_hub_name_quickly(tmp_path: Path, engine: str) -> None:
    settings = Settings(
        engine=engine, whisper_model="medium", model_cache_dir=tmp_path, hub_downloads=False
    )
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="hub downloads are off"):
        get_transcriber(settings)
    assert time.monotonic() - started < 2.0
