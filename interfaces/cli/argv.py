"""Command-line spellings typer cannot express: ``--vocabulary TERM [TERM ...]``.

Click options take one value per flag, so ``--vocabulary`` is repeatable (``--vocabulary A
--vocabulary B``); :func:`expand_multi_value` also accepts the argparse-style spelling with
several terms after one flag, rewriting ``--vocabulary A B`` into the repeated form before typer
parses the line. The terms end at the next option (``-...``), at ``--``, or at the first
argument that names an existing file or folder (the files to ingest), so
``teleai ingest --vocabulary TeleAI Kubernetes call.wav`` means two terms and one file.
"""

from __future__ import annotations

import glob
from pathlib import Path

MULTI_VALUE_OPTIONS = frozenset({"--vocabulary"})


def _is_path(token: str) -> bool:
    if Path(token).exists():
        return True
    # glob.glob, not Path.glob: a user's pattern may be absolute or contain "..".
    return glob.has_magic(token) and bool(glob.glob(token))  # noqa: PTH207


def expand_multi_value(argv: list[str]) -> list[str]:
    """``argv`` with every multi-value option's extra values turned into repeated flags."""
    out: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        out.append(token)
        index += 1
        if token not in MULTI_VALUE_OPTIONS or index >= len(argv):
            continue
        out.append(argv[index])  # the first value, whatever it looks like
        index += 1
        while index < len(argv):
            nxt = argv[index]
            if nxt.startswith("-") or _is_path(nxt):
                break
            out += [token, nxt]
            index += 1
    return out
