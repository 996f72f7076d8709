"""Query parameters several controllers share, bounded so a bad value is a 400, never a database error."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

Limit = Annotated[int, Parameter(ge=1, le=500, description="How many to return (1 to 500).")]
Offset = Annotated[int, Parameter(ge=0, le=1_000_000, description="How many to skip (0 to 1,000,000).")]
