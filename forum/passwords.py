"""Password hashing with argon2id, at or above OWASP's minimum, rehashed when the parameters change."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import Type

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 at the least.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, type=Type.ID)

MIN_LENGTH = 8
MAX_LENGTH = 1024


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


# Verified when the account does not exist, so a wrong name costs as long as a wrong password.
DUMMY_HASH = _HASHER.hash("not a real password")
