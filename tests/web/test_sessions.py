"""The web session helpers: where ``next`` may lead, and the sign-in redirect."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from staterelay.browser.sessions import login_redirect, safe_next


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/account", "/account"),
        (
            "/oauth/authorize?client_id=alexa&state=x%20y",
            "/oauth/authorize?client_id=alexa&state=x%20y",
        ),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("account", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/a\\b", "/"),
        ("https://evil.example/account", "/"),
        ("/a b", "/"),
        ("/a\tb", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_safe_next_accepts_only_local_paths(value: str | None, expected: str) -> None:
    """Only a path on this site survives; anything else becomes the start page."""
    assert safe_next(value) == expected


def test_login_redirect_keeps_the_path_and_query() -> None:
    """Signing in leads back to the very URL that needed it."""
    get = login_redirect(make_mocked_request("GET", "/oauth/authorize?client_id=a&state=b"))
    assert get.status == 303
    assert get.location == "/login?next=%2Foauth%2Fauthorize%3Fclient_id%3Da%26state%3Db"
    post = login_redirect(make_mocked_request("POST", "/oauth/authorize?client_id=a"))
    assert post.location == "/login?next=%2Foauth%2Fauthorize%3Fclient_id%3Da"
