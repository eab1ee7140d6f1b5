"""Keys derived from the instance secret: encryption at rest and token digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """The instance secret kept in ``path`` (mode 0600), created on first use."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(SECRET_BYTES)
        encoded = base64.urlsafe_b64encode(secret)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, encoded + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return secret
    secret = base64.urlsafe_b64decode(data)
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path} does not hold a valid secret key")
    return secret


def token_digest(token: str) -> str:
    """SHA-256 hex digest of a bearer secret: what the database keeps instead of the secret."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def derive_key(instance_secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose: HKDF-SHA256 (RFC 5869) with no salt.

    One output block is all a 32-byte key needs, so extract-then-expand is two HMACs.
    """
    prk = hmac.new(bytes(32), instance_secret, hashlib.sha256).digest()
    return hmac.new(prk, f"staterelay:{purpose}".encode() + b"\x01", hashlib.sha256).digest()


def relay_secret(instance_secret: bytes) -> str:
    """The Alexa relay secret this instance uses when ``alexa.relay_secret`` is not set.

    Derived from the instance secret (``secret.key`` in the data directory, mode 0600), it
    is made once and stays the same across restarts, ``alexa setup`` runs, the dashboard
    and a restore from backup, so the relay package always matches the server.
    """
    return base64.urlsafe_b64encode(derive_key(instance_secret, "alexa-relay")).decode().rstrip("=")


class SecretBox:
    """AES-GCM encryption with a key derived from the instance secret for one purpose.

    ``cryptography`` is loaded on first use: an idle instance that never encrypts
    anything does not carry OpenSSL's bindings in memory.
    """

    def __init__(self, instance_secret: bytes, purpose: str) -> None:
        self._key = derive_key(instance_secret, purpose)
        self._purpose = purpose.encode()
        self._aead: AESGCM | None = None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self._key)
        return self._aead

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext as ``v1.<base64 nonce+ciphertext>``."""
        nonce = secrets.token_bytes(12)
        sealed = self._cipher().encrypt(nonce, plaintext.encode("utf-8"), self._purpose)
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; ``ValueError`` when it was not sealed by this box."""
        from cryptography.exceptions import InvalidTag

        if not ciphertext.startswith("v1."):
            raise ValueError("unknown ciphertext format")
        raw = base64.urlsafe_b64decode(ciphertext[3:].encode("ascii"))
        try:
            return self._cipher().decrypt(raw[:12], raw[12:], self._purpose).decode("utf-8")
        except InvalidTag:
            raise ValueError("ciphertext does not decrypt with this instance's key") from None
