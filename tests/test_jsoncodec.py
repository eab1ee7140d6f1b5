"""The JSON codec of the busy paths: compact UTF-8 out, strict in, lenient where asked."""

from __future__ import annotations

import json
import math

import pytest

from staterelay.jsoncodec import (
    TooDeep,
    check_depth,
    decode,
    decode_lenient,
    encode,
    encode_sorted_text,
    encode_text,
)


def test_encoding_is_compact_utf8_and_sorted_on_request() -> None:
    value = {"b": [1, 2.5, None, True], "a": "Küche ☀"}
    assert encode(value) == '{"b":[1,2.5,null,true],"a":"Küche ☀"}'.encode()
    assert encode_text(value) == '{"b":[1,2.5,null,true],"a":"Küche ☀"}'
    assert encode_sorted_text(value) == '{"a":"Küche ☀","b":[1,2.5,null,true]}'
    assert decode(encode(value)) == value
    assert decode(encode_sorted_text(value)) == value


def test_what_json_cannot_hold_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode({"a": object()})


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": -Infinity}', '{"a": 1e400}', "{", ""])
def test_strict_decoding_refuses_what_is_not_json(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        decode(text.encode())


def test_lenient_decoding_reads_numbers_as_the_standard_library_does() -> None:
    assert math.isnan(decode_lenient(b'{"a": NaN}')["a"])
    assert decode_lenient(b'{"a": 1e400}')["a"] == math.inf
    assert decode_lenient(b'{"a": -Infinity}')["a"] == -math.inf
    assert decode_lenient(b'{"a": "\\ud800"}')["a"] == "\ud800"
    for broken in (b"{", b"", b'{"a": nope}'):
        with pytest.raises(json.JSONDecodeError):
            decode_lenient(broken)


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 32 + b"]" * 32,
        b'{"a":' * 32 + b"1" + b"}" * 32,
        b'["' + b"[" * 100 + b'"]',  # brackets inside a string do not nest
        b'["\\"' + b"{" * 100 + b'"]',  # nor after an escaped quote
        b"[" + b"[1]," * 5000 + b"1]",  # many brackets, shallow
    ],
)
def test_depth_check_lets_shallow_documents_through(text: bytes) -> None:
    check_depth(text)
    assert decode_lenient(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 33 + b"]" * 33,
        b'{"a":' * 33 + b"1" + b"}" * 33,
        b"[" * 1100 + b"]" * 1100,
        b"[" * 100000,
    ],
)
def test_depth_check_refuses_deep_documents_before_parsing(text: bytes) -> None:
    with pytest.raises(TooDeep, match="deeper than 32 levels"):
        check_depth(text)
    with pytest.raises(TooDeep):
        decode_lenient(text)
