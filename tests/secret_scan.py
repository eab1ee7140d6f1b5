"""A suite-wide check that no log line carries a secret: tokens, keys, passwords, client secrets.

``tests/conftest.py`` installs one ``LogScan`` handler on the root logger for the whole run
(and feeds it the stderr of the server processes tests start); at the end of the session
any finding fails the run. Secrets are recognised by their formats (StateRelay's API keys,
OAuth tokens, codes and client secrets, webhook signing secrets, Login with Amazon tokens,
anything after ``Bearer``) and by the literal secrets test modules define.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Final

# StateRelay's own formats: see staterelay/core/auth.py (API keys), core/oauth.py (access,
# refresh, code and client-secret prefixes) and core/webhooks.py (signing secrets).
SECRET_PATTERNS: Final = (
    # ...and core/recovery.py (password reset links, srp_).
    re.compile(r"\bsr[arcsp]?_[A-Za-z0-9_-]{32,}"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/]{20,}"),
    # Login with Amazon access and refresh tokens (the tests' are Atza|access-1, Atzr|...).
    re.compile(r"\bAtz[a-z]\|[^\s\"',;]+"),
    re.compile(r"\bBearer\s+(?!realm\b)[A-Za-z0-9._~+/|-]{8,}=*"),
)
# Module constants of the test suite whose names say they hold a secret.
SECRET_NAME: Final = re.compile(r"(SECRET|PASSWORD|PASSPHRASE|TOKEN|SERVICE_KEY)$")
NOT_SECRET_NAME: Final = re.compile(r"(HEADER|PREFIX|PATH|URL|NAME|FIELD|COOKIE)")
MIN_LITERAL: Final = 8
EXCERPT: Final = 60


@dataclass(frozen=True)
class Finding:
    """A secret seen in a log: where it came from and the text around it."""

    source: str
    secret: str
    excerpt: str

    def describe(self) -> str:
        """One line for the failure report (the secret itself shortened)."""
        return f"{self.source}: {self.secret[:10]}... in {self.excerpt!r}"


class SecretScanner:
    """Finds secrets in text by format and by the literal values it was told of."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        self._literals = {value for value in literals if len(value) >= MIN_LITERAL}
        self._lock = threading.Lock()
        self.findings: list[Finding] = []
        self.scanned = 0

    def add_literals(self, values: Iterable[str]) -> None:
        """Also look for these exact values."""
        self._literals.update(value for value in values if len(value) >= MIN_LITERAL)

    def secrets_in(self, text: str) -> list[str]:
        """Every secret in ``text``."""
        found = [match.group(0) for pattern in SECRET_PATTERNS for match in pattern.finditer(text)]
        found += [literal for literal in self._literals if literal in text]
        return found

    def scan(self, source: str, text: str) -> list[Finding]:
        """Scan one piece of text; findings are kept and returned."""
        new = []
        for secret in dict.fromkeys(self.secrets_in(text)):
            at = text.find(secret)
            start = max(0, at - EXCERPT)
            excerpt = text[start : at + len(secret) + EXCERPT]
            new.append(Finding(source, secret, excerpt))
        with self._lock:
            self.scanned += 1
            self.findings.extend(new)
        return new


class LogScan(logging.Handler):
    """A handler that scans each record's message, arguments, extras and exception."""

    def __init__(self, scanner: SecretScanner) -> None:
        super().__init__(logging.DEBUG)
        self.scanner = scanner
        self._exceptions = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Scan the record (never raises: a broken record is reported, not fatal)."""
        try:
            parts = [str(record.msg), repr(record.args)]
            try:
                parts.append(record.getMessage())
            except Exception as exc:  # noqa: BLE001 - a malformed record is still scanned
                parts.append(f"<unformattable: {exc!r}>")
            parts += [f"{k}={v!r}" for k, v in record.__dict__.items() if k not in _STANDARD]
            if record.exc_info:
                parts.append(self._exceptions.formatException(record.exc_info))
            elif record.exc_text:
                parts.append(record.exc_text)
            self.scanner.scan(f"log {record.name} ({record.levelname})", "\n".join(parts))
        except Exception:  # noqa: BLE001 - logging must never fail a test
            self.handleError(record)


_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def suite_literals(modules: Iterable[ModuleType] | None = None) -> set[str]:
    """String constants of ``tests.*`` modules named like secrets (PASSWORD, *_SECRET, ...)."""
    found: set[str] = set()
    chosen = (
        modules
        if modules is not None
        else [m for name, m in list(sys.modules.items()) if name.startswith("tests.")]
    )
    for module in chosen:
        for name, value in vars(module).items():
            if not name.isupper() or NOT_SECRET_NAME.search(name):
                continue
            if SECRET_NAME.search(name) and isinstance(value, str):
                found.add(value)
    return found


SUITE_SCANNER: Final = SecretScanner()
