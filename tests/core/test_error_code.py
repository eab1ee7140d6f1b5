"""``error_code``: the short code an upstream's error body carries, and nothing that is not one."""

from __future__ import annotations

from staterelay.core.sinks import error_code


def test_the_code_at_its_place_is_read() -> None:
    alexa = b'{"payload": {"code": "SKILL_DISABLED_EXCEPTION", "description": "x"}}'
    google = b'{"error": {"code": 404, "status": "NOT_FOUND"}}'
    assert error_code(alexa, "payload", "code") == "SKILL_DISABLED_EXCEPTION"
    assert error_code(google, "error", "status") == "NOT_FOUND"
    assert error_code(google, "payload", "code") is None


def test_anything_else_is_no_code() -> None:
    for raw in (
        b"<html>bad gateway</html>",
        b"[]",
        b'{"payload": "down"}',
        b'{"payload": {"code": 7}}',
        b'{"payload": {"code": "two words"}}',
        b'{"payload": {"code": "' + b"A" * 65 + b'"}}',
    ):
        assert error_code(raw, "payload", "code") is None, raw
