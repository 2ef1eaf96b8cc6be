"""Staff passwords: argon2id hashes (argon2-cffi, its RFC 9106 low-memory defaults).

Hashing and checking cost tens of milliseconds of CPU and 64 MiB on purpose; the service layer
runs them in a worker thread, a few at a time. A sign-in with an unknown email checks the
password against `dummy_hash()`, so it takes as long as a wrong password for a real user and
the time of the answer does not tell whether an email has an account.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
#: longer passwords only cost hashing time; 1024 characters is more than any manager needs
MAX_LENGTH = 1024

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash of a random password with today's parameters (no password ever matches it)."""
    return _hasher.hash(secrets.token_urlsafe(32))
