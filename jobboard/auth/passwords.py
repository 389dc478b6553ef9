"""Password hashing, with the method from configuration (cheaper in tests).

An account may have no password (`None`): `flask users verify` clears the one chosen by
whoever registered an address nobody had proven, and its owner sets one through password
reset. No password matches it, after the same hashing work as a real check."""

from __future__ import annotations

import functools
import secrets

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def password_matches(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        check_password_hash(decoy_password_hash(), password)
        return False
    return check_password_hash(password_hash, password)


def decoy_password_hash() -> str:
    """A hash nobody knows the password of, made with the configured method: checking
    against it costs what checking a real password costs."""
    return _decoy(current_app.config["PASSWORD_HASH_METHOD"])


@functools.cache
def _decoy(method: str) -> str:
    return generate_password_hash(secrets.token_urlsafe(16), method=method)
