"""Webhook secrets and signatures (Standard Webhooks).

A secret is `whsec_` + base64 of 32 random bytes, shown to its owner once. It is stored
sealed (Fernet, with a key derived from SECRET_KEY and used for nothing else), so a copy
of the database alone signs nothing; the worker unseals it to sign. Signatures are made by
the reference `standardwebhooks` library: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.
{body}">`, keyed by the secret's decoded bytes; during a rotation, one per live secret,
space-separated.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _sealer(secret_key: str) -> Fernet:
    key = hashlib.sha256(b"jobboard:webhook-secret:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str, secret_key: str) -> str:
    return _sealer(secret_key).encrypt(secret.encode()).decode()


def unseal(sealed: str, secret_key: str) -> str | None:
    """The secret, or None when it was sealed under another SECRET_KEY."""
    try:
        return _sealer(secret_key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


def signature(secrets_in_use: Iterable[str], message_id: str, at: datetime, body: bytes) -> str:
    """The `webhook-signature` header: one signature per secret, space-separated."""
    return " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets_in_use)


def headers(
    secrets_in_use: Iterable[str], message_id: str, at: datetime, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (`at` is the attempt's time)."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature(secrets_in_use, message_id, at, body),
        "user-agent": "jobboard-webhooks/1",
    }
