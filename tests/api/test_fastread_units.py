"""The status reads' JSON in and out (interfaces/api/fastread.py): pydantic-core's parser and
serialiser must give exactly what ``json.loads`` and Starlette's ``JSONResponse`` gave.

Real PostgreSQL renders the jsonb (its own number and string forms), so the loader is checked
on what the server sends, not on JSON written here.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from starlette.responses import JSONResponse

from db.engine import libpq_url
from interfaces.api.fastread import FastJSONResponse, _RustJsonb
from tests.conftest import ADMIN_URL

VALUES: list[Any] = [
    {"text": 'Grüße, 東京 — \u2028 <b>&amp;</b> \\ " \x00 \x1f', "n": None, "t": True},
    [0.1, 1e16, -0.0, 1.5e308, 5e-324, 123.456, 0.0001, 0.87, 2**70, -(2**63), 0],
    {"a": 1, "nested": {"list": [{"x": [1, 2, {"y": "z"}]}], "empty": {}, "none": []}},
    {"segments": [{"start": 0.0, "end": 2.5, "text": " hello", "words": []}] * 3},
]


@pytest.mark.parametrize("value", VALUES)
def test_the_response_is_the_same_bytes_as_starlettes(value: Any) -> None:
    assert FastJSONResponse(value).body == JSONResponse(value).body


def test_small_floats_differ_only_in_how_they_are_written() -> None:
    """The one difference: below 1e-4 Python writes ``4e-05`` and ``1e-07``, pydantic-core
    ``0.00004`` and ``1e-7`` (the same numbers; the transcript object rounds its confidences to
    4 places, so only stored metadata passed through as it is can show it)."""
    value = {"stage_seconds": {"probe": 4e-05, "x": 1e-07, "y": 1.5e-10}}
    fast, plain = FastJSONResponse(value).body, JSONResponse(value).body
    assert fast == b'{"stage_seconds":{"probe":0.00004,"x":1e-7,"y":1.5e-10}}'
    assert plain == b'{"stage_seconds":{"probe":4e-05,"x":1e-07,"y":1.5e-10}}'
    assert json.loads(bytes(fast)) == json.loads(bytes(plain)) == value


@pytest.mark.parametrize("value", VALUES)
def test_jsonb_from_the_server_parses_as_json_loads_parses_it(value: Any) -> None:
    with psycopg.connect(libpq_url(ADMIN_URL)) as conn:
        stored = json.dumps(value).replace("\\u0000", "")  # jsonb refuses NUL in strings
        with conn.cursor() as plain:
            plain.execute("SELECT %s::jsonb::text", (stored,))
            rendered = plain.fetchone()
        with conn.cursor() as fast:
            fast.adapters.register_loader("jsonb", _RustJsonb)
            fast.execute('SELECT %s::jsonb, \'{"a": 1, "a": 2}\'::jsonb', (stored,))
            loaded = fast.fetchone()
    assert rendered is not None and loaded is not None
    assert loaded[0] == json.loads(rendered[0])
    assert loaded[1] == {"a": 2}
    assert json.dumps(loaded[0]) == json.dumps(json.loads(rendered[0]))  # types, not just ==
