"""When an attempt failed, whether and when to try again: status classes, Retry-After, backoff."""

from __future__ import annotations

import email.utils
import math
import random
import time
from datetime import UTC
from enum import Enum


class AttemptStatus(str, Enum):
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"


RETRYABLE_STATUS_CODES = frozenset({408, 429})
"""Besides every 5xx: the other codes that mean "try again later"."""


def backoff_seconds(
    attempt: int,
    *,
    base_s: float,
    retry_after_s: float | None,
    cap_s: float,
    rng: random.Random,
) -> float:
    """Delay before the retry that follows failed attempt number `attempt` (1-based).

    Full jitter over base_s * 2**(attempt-1) spreads retries of many executions apart; a
    server's Retry-After is a floor, and nothing waits longer than cap_s.
    """
    exponent = min(max(attempt, 1) - 1, 62)
    ceiling = min(cap_s, base_s * math.pow(2, exponent))
    delay = rng.uniform(0.0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return max(0.0, min(cap_s, delay))


def parse_retry_after(value: str | None, *, now_s: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s))


def classify_status(status_code: int) -> tuple[AttemptStatus, bool]:
    """(status, retryable) for a final HTTP status code."""
    if 200 <= status_code < 300:
        return AttemptStatus.SUCCESS, False
    return AttemptStatus.FAILED, status_code >= 500 or status_code in RETRYABLE_STATUS_CODES
