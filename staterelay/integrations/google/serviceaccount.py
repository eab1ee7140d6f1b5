"""The Home Graph service account: its JSON key, the signed JWT, and the access token.

Google's token endpoint takes a JWT (RS256, signed with the key's private key, ``kid`` the
key id) asserting ``iss`` = the account's e-mail, ``scope`` = Home Graph, ``aud`` = the token
endpoint, and a lifetime of at most an hour; it answers an access token, which is kept until
shortly before it expires and made again after a 401.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from staterelay.core.clock import Clock
from staterelay.settings import GoogleSettings, Settings

SCOPE: Final = "https://www.googleapis.com/auth/homegraph"
GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI: Final = "https://oauth2.googleapis.com/token"
JWT_LIFETIME: Final = 3600
EXPIRY_MARGIN: Final = 300.0  # a token is made again this long before it expires
TOKEN_TIMEOUT: Final = aiohttp.ClientTimeout(total=10.0)
MAX_ANSWER_BYTES: Final = 65536

Session = Callable[[], aiohttp.ClientSession]


class KeyFileError(Exception):
    """The key file is missing, unreadable or not a service account key."""


class TokenError(Exception):
    """Google's token endpoint did not issue a token."""


def key_path(settings: Settings) -> Path | None:
    """Where the key file is: ``google.service_account_file``, relative to the data directory
    unless absolute; None when not configured."""
    configured = settings.google.service_account_file
    if not configured:
        return None
    path = Path(configured).expanduser()
    return path if path.is_absolute() else settings.data_dir / path


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A service account key as Google's JSON file holds it."""

    client_email: str
    private_key_id: str
    token_uri: str
    project_id: str
    key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> ServiceAccount:
        """Read and check a key file; ``KeyFileError`` says what is wrong (never the key)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KeyFileError(
                f"cannot read {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        except ValueError:
            raise KeyFileError(f"{path} is not JSON") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, where: str = "the key") -> ServiceAccount:
        """A key from its parsed JSON."""
        if not isinstance(data, dict) or data.get("type") != "service_account":
            raise KeyFileError(f"{where} is not a service account key (type service_account)")
        for name in ("client_email", "private_key", "private_key_id"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise KeyFileError(f"{where} has no {name}")
        try:
            key = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{where}: private_key is not a PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFileError(f"{where}: private_key is not an RSA key")
        return cls(
            client_email=data["client_email"],
            private_key_id=data["private_key_id"],
            token_uri=str(data.get("token_uri") or DEFAULT_TOKEN_URI),
            project_id=str(data.get("project_id") or ""),
            key=key,
        )

    def assertion(self, audience: str, now: float) -> str:
        """The signed JWT for the token endpoint at ``audience``."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.private_key_id}
        issued = int(now)
        claims = {
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": audience,
            "iat": issued,
            "exp": issued + JWT_LIFETIME,
        }
        signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class HomeGraphToken:
    """The service account's access token: made on first use, kept until shortly before it
    expires, made again when Home Graph refused it. One request at a time makes it."""

    def __init__(self, settings: Settings, session: Session, clock: Clock) -> None:
        self._path = key_path(settings)
        self._google: GoogleSettings = settings.google
        self._session = session
        self._clock = clock
        self._account: ServiceAccount | None = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.minted = 0

    @property
    def configured(self) -> bool:
        """True when a key file is configured."""
        return self._path is not None

    def account(self) -> ServiceAccount:
        """The key, read once (``KeyFileError`` until it can be)."""
        if self._account is None:
            if self._path is None:
                raise KeyFileError("google.service_account_file is not set")
            self._account = ServiceAccount.load(self._path)
        return self._account

    def token_url(self) -> str:
        """``google.token_url``, else the key's ``token_uri``."""
        return self._google.token_url or self.account().token_uri

    async def get(self, *, stale: str | None = None) -> str:
        """A valid access token; ``stale`` is one Home Graph refused (it is not given again)."""
        async with self._lock:
            now = self._clock()
            if self._token is not None and self._token != stale and now < self._expires_at:
                return self._token
            account = self.account()
            url = self.token_url()
            form = {"grant_type": GRANT_TYPE, "assertion": account.assertion(url, now)}
            try:
                async with self._session().post(
                    url, data=form, timeout=TOKEN_TIMEOUT, allow_redirects=False
                ) as response:
                    raw = await response.content.read(MAX_ANSWER_BYTES)
                    status = response.status
            except TimeoutError:
                raise TokenError("Google's token endpoint timed out") from None
            except aiohttp.ClientError as exc:
                raise TokenError(
                    f"Google's token endpoint unreachable: {type(exc).__name__}"
                ) from None
            body = _json(raw)
            if status != 200 or not isinstance(body.get("access_token"), str):
                code = body.get("error")
                what = f" {code}" if isinstance(code, str) and code.isprintable() else ""
                raise TokenError(f"Google's token endpoint answered {status}{what}"[:200])
            lifetime = body.get("expires_in")
            seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
            self._token = body["access_token"]
            self._expires_at = now + max(seconds - EXPIRY_MARGIN, seconds / 2)
            self.minted += 1
            return self._token


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
