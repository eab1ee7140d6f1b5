"""Password hashing with argon2id at OWASP's recommended parameters or stronger."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from staterelay.core.errors import InvalidInput

PASSWORD_MIN = 10
PASSWORD_MAX = 1024

# OWASP: argon2id, m=19 MiB, t=2, p=1 as a floor; a little more memory costs a Pi nothing.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def validate_password(password: object) -> str:
    """A password of 10 to 1024 characters."""
    if not isinstance(password, str):
        raise InvalidInput("password must be a string", field="password")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(
            f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters", field="password"
        )
    return password


def hash_password(password: str) -> str:
    """An argon2id hash of a validated password."""
    return HASHER.hash(validate_password(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``."""
    try:
        return HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return HASHER.check_needs_rehash(stored_hash)
