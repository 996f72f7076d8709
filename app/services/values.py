"""Small conversions between database values and what the API shows: ISO times, ids from URLs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import overload


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: datetime | None) -> str | None: ...
def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_uuid(value: str | None) -> uuid.UUID | None:
    """The id in `value`, or None when it is empty or not a UUID (an unknown id is "not found")."""
    if not value:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
