"""HMAC-SHA256 body signatures in the `sha256=<hex>` header form (X-Hub-Signature-256, X-Switchboard-Signature)."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["sign_sha256", "verify_sha256"]

_PREFIX = "sha256="
_HEX_DIGITS = frozenset("0123456789abcdef")
_HEX_LENGTH = 64


def _key(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        # An empty key signs nothing: anyone could compute the "signature".
        raise ValueError("signing secret is empty: set the channel's app secret")
    return key


def sign_sha256(secret: bytes | str, body: bytes) -> str:
    """`"sha256=" + hex(HMAC-SHA256(secret, body))`."""
    return _PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_sha256(secret: bytes | str, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body` under `secret`; False when absent, malformed or wrong.

    Compared in constant time. An empty secret verifies nothing.
    """
    if not header or not secret:
        return False
    header = header.strip()
    if header[: len(_PREFIX)].lower() != _PREFIX:
        return False
    given = header[len(_PREFIX) :].lower()
    # Checked before comparing so compare_digest only ever sees ASCII of the expected length.
    if len(given) != _HEX_LENGTH or not _HEX_DIGITS.issuperset(given):
        return False
    expected = hmac.new(_key(secret), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
