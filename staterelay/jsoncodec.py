"""JSON for the busy paths, with orjson: directives and their answers, API answers, stored rows.

orjson encodes several times faster than the standard library and decodes about three
times faster, and every directive, state change and device read goes through both. It is
also stricter on input: ``NaN``, ``Infinity``, numbers beyond the range of a double and
invalid UTF-8 are not JSON (RFC 8259) and are refused with ``ValueError`` (``decode_lenient``
reads them as the standard library does). Text comes out as UTF-8, compact, never
ASCII-escaped. API request bodies keep their own stricter I-JSON parser (api/bodies.py).

Whatever arrives from outside is measured with ``check_depth`` before any parser sees it:
the standard library's parser recurses once per level and runs out of stack on a body of
brackets a few kilobytes long (orjson stops at 1024 levels, the fallback did not).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Final

import orjson

MAX_DEPTH: Final = 32
"""How deeply a JSON text from outside may nest arrays and objects (no message needs 10)."""

# A JSON string (skipped: brackets inside it do not nest) or one structural bracket.
_STRINGS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING: Final = frozenset(b"[{")


class TooDeep(ValueError):
    """A JSON text nests arrays and objects deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the JSON nests deeper than {limit} levels")
        self.limit = limit


def check_depth(data: bytes | bytearray | memoryview, limit: int = MAX_DEPTH) -> None:
    """Raise ``TooDeep`` when ``data`` opens more than ``limit`` arrays or objects in a row.

    A text with no more brackets than ``limit`` cannot nest deeper, so the usual message
    costs two ``count`` calls; only one with more brackets is scanned (in C, but for the
    running total), strings taken out first.
    """
    raw = bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    brackets = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    deepest = max(accumulate(1 if b in _OPENING else -1 for b in brackets), default=0)
    if deepest > limit:
        raise TooDeep(limit)


def encode(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON bytes (``TypeError`` for what JSON cannot hold)."""
    return orjson.dumps(value)


def encode_text(value: Any) -> str:
    """``value`` as compact JSON text."""
    return orjson.dumps(value).decode("utf-8")


def encode_sorted_text(value: Any) -> str:
    """``value`` as compact JSON text with object keys sorted: one spelling per value."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def decode(data: bytes | bytearray | memoryview | str) -> Any:
    """The value of a JSON document; ``ValueError`` when it is not one."""
    return orjson.loads(data)


def decode_lenient(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Like ``decode``, but what only the standard library reads is read its way.

    For a document that is well formed but out of orjson's range (``NaN``, ``1e400``, a
    lone surrogate escape) the value the standard library gives (``nan``, ``inf``, the
    surrogate), so a handler can refuse the one field with an answer of its own instead of
    refusing the whole body; ``ValueError`` only for what is not JSON at all, ``TooDeep``
    (a ``ValueError``) for a document nested deeper than ``max_depth``.
    """
    check_depth(data, max_depth)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
