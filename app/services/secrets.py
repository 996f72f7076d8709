"""Secrets at rest: Fernet encryption with a key derived from SWITCHBOARD_SECRET_KEY."""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken

from app.settings import get_settings


class SecretError(Exception):
    """A stored secret could not be decrypted (wrong or rotated SWITCHBOARD_SECRET_KEY)."""


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    # A purpose-bound subkey, so the same SWITCHBOARD_SECRET_KEY can also sign sessions.
    derived = hmac.new(secret_key.encode(), b"switchboard/secrets/v1", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(value: str) -> str:
    """Ciphertext of `value`; the empty string stays empty (no secret configured)."""
    if not value:
        return ""
    return _fernet(get_settings().secret_key).encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet(get_settings().secret_key).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretError(
            "a stored secret cannot be decrypted: SWITCHBOARD_SECRET_KEY differs from the one "
            "it was saved with; restore that key or enter the secret again"
        ) from exc
