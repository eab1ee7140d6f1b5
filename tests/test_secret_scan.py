"""The suite's log secret scan really finds leaks (checked on a scanner of its own)."""

from __future__ import annotations

import logging
import secrets
import types
from collections.abc import Iterator

import pytest

from tests.secret_scan import SUITE_SCANNER, LogScan, SecretScanner, suite_literals

API_KEY = "sr_" + secrets.token_urlsafe(32)
ACCESS = "sra_" + secrets.token_urlsafe(32)
REFRESH = "srr_" + secrets.token_urlsafe(32)
CLIENT_SECRET = "srs_" + secrets.token_urlsafe(32)
WEBHOOK = "whsec_" + "QUJD" * 11


@pytest.fixture
def scanner() -> SecretScanner:
    """A scanner that is not the suite's: feeding it leaks fails nothing."""
    return SecretScanner(["correct horse battery staple"])


@pytest.fixture
def leaky_logger(scanner: SecretScanner) -> Iterator[logging.Logger]:
    """A logger that reaches only the separate scanner."""
    logger = logging.getLogger("tests.leaky")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LogScan(scanner)
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)
    logger.propagate = True


@pytest.mark.parametrize(
    "text",
    [
        f"authenticated with {API_KEY}",
        f"token={ACCESS}",
        f"refreshing {REFRESH}",
        f"client secret {CLIENT_SECRET}",
        f"signing with {WEBHOOK}",
        "Authorization: Bearer abcdefghijklmnop",
        "LWA answered Atza|access-3 and Atzr|refresh-3",
        "password was correct horse battery staple",
    ],
)
def test_each_kind_of_secret_is_found(scanner: SecretScanner, text: str) -> None:
    """Keys, tokens, client and signing secrets, bearer values, LWA tokens, passwords."""
    assert scanner.scan("test", text)


@pytest.mark.parametrize(
    "text",
    [
        "GET /api/v1/devices/{device_id} 200 1.2ms tenant=ten_abc",
        'WWW-Authenticate: Bearer realm="staterelay", error="invalid_token"',
        "send an API key or access token as 'Authorization: Bearer <token>'",
        "key prefix sr_AbC created",
        "device dev_0123456789abcdef changed",
    ],
)
def test_ordinary_lines_pass(scanner: SecretScanner, text: str) -> None:
    """Route templates, challenges, key prefixes and ids are not secrets."""
    assert scanner.scan("test", text) == []


def test_leaks_through_logging_are_caught_in_every_part(
    scanner: SecretScanner, leaky_logger: logging.Logger
) -> None:
    """A secret in the message, the arguments, an extra field or an exception is found."""
    leaky_logger.info("plain line")
    assert scanner.findings == []
    leaky_logger.info("login with %s", API_KEY)
    leaky_logger.debug("lazy %r", {"token": ACCESS})
    leaky_logger.warning("extra", extra={"authorization": f"Bearer {REFRESH}"})
    try:
        raise ValueError(f"bad client secret {CLIENT_SECRET}")
    except ValueError:
        leaky_logger.exception("failed")
    found = {finding.secret for finding in scanner.findings}
    assert {API_KEY, ACCESS, CLIENT_SECRET} <= found
    assert any(REFRESH in secret for secret in found)
    assert all(f.source.startswith("log tests.leaky") for f in scanner.findings)
    assert API_KEY[:10] in scanner.findings[0].describe()


def test_literals_come_from_secret_named_constants() -> None:
    """Module constants named like secrets are collected; headers and paths are not."""
    module = types.ModuleType("tests.fake")
    module.PASSWORD = "a long test passphrase"
    module.RELAY_SECRET = "relay-secret-value-123"
    module.SECRET_HEADER = "X-StateRelay-Relay-Secret"
    module.TOKEN_PATH = "/oauth/token"
    module.SHORT_SECRET = "abc"
    assert suite_literals([module]) == {"a long test passphrase", "relay-secret-value-123", "abc"}
    assert SecretScanner(["abc"]).scan("test", "abc") == []  # too short to look for


def test_the_suite_scanner_is_installed() -> None:
    """The session fixture put the suite's handler on the root logger."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, LogScan)]
    assert [h.scanner for h in handlers] == [SUITE_SCANNER]
    before = SUITE_SCANNER.scanned
    logging.getLogger("tests.scan").debug("a harmless line")
    assert SUITE_SCANNER.scanned == before + 1
