"""Real test speech, by the name the tests import it under: :mod:`interfaces.speech`.

Tests assert a word error rate against the sentence, so the audio must be generated in the run
(never checked in) and the tools must be present: a missing tool fails loudly. The one
implementation lives in the package, because the demo speaks its sample calls with it too.
"""

from __future__ import annotations

from interfaces.speech import FORMAT_ARGS, FORMATS, convert, espeak_wav, require_tool, speech_file

__all__ = ["FORMATS", "FORMAT_ARGS", "convert", "espeak_wav", "require_tool", "speech_file"]
