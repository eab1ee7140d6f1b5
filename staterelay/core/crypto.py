"""Keys derived from the instance secret: encryption at rest and token digests."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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


class SecretBox:
    """AES-GCM encryption with a key derived (HKDF) from the instance secret for one purpose."""

    def __init__(self, instance_secret: bytes, purpose: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"staterelay:{purpose}".encode()
        ).derive(instance_secret)
        self._aead = AESGCM(key)
        self._purpose = purpose.encode()

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext as ``v1.<base64 nonce+ciphertext>``."""
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), self._purpose)
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; ``ValueError`` when it was not sealed by this box."""
        if not ciphertext.startswith("v1."):
            raise ValueError("unknown ciphertext format")
        raw = base64.urlsafe_b64decode(ciphertext[3:].encode("ascii"))
        try:
            return self._aead.decrypt(raw[:12], raw[12:], self._purpose).decode("utf-8")
        except InvalidTag:
            raise ValueError("ciphertext does not decrypt with this instance's key") from None
