"""Usage metering: LLM calls and tokens and local-engine calls per workspace per month, and the token quota."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import msgspec

from app.db import engine
from app.db.tables import UsageCounter, Workspace

log = logging.getLogger(__name__)

LOCAL_FLUSH_DELAY_S = 1.0
"""Local-engine calls are summed in memory and written this long after the first unwritten one:
the offline path stays free of a per-message database write; a crash loses at most this window."""

# One statement per record, so concurrent workers add up correctly (no read-modify-write).
_ADD = """
INSERT INTO usage_counters (id, workspace, month, llm_calls, prompt_tokens, completion_tokens, local_calls)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace, month) DO UPDATE SET
    llm_calls = usage_counters.llm_calls + EXCLUDED.llm_calls,
    prompt_tokens = usage_counters.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = usage_counters.completion_tokens + EXCLUDED.completion_tokens,
    local_calls = usage_counters.local_calls + EXCLUDED.local_calls
RETURNING prompt_tokens + completion_tokens
"""


def current_month(now: datetime | None = None) -> str:
    """YYYY-MM in UTC: quotas reset on the first of the month, 00:00 UTC."""
    return (now or datetime.now(UTC)).strftime("%Y-%m")


class UsageRead(msgspec.Struct, frozen=True, kw_only=True):
    """One workspace's usage in one month."""

    month: str
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    local_calls: int = 0
    monthly_token_quota: int = 0
    """0 = no quota."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


async def _add(
    workspace_id: str,
    *,
    llm_calls: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    local_calls: int = 0,
    month: str | None = None,
) -> int:
    """Add to this month's counters; returns the month's tokens so far."""
    return await engine.pool().fetchval(
        _ADD,
        uuid.uuid4(),
        uuid.UUID(workspace_id),
        month or current_month(),
        llm_calls,
        prompt_tokens,
        completion_tokens,
        local_calls,
    )


async def record_llm(workspace_id: str, *, prompt_tokens: int, completion_tokens: int) -> int:
    """Count one LLM call and its tokens (as the API reported them); returns the month's tokens so far."""
    return await _add(
        workspace_id, llm_calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )


async def read(workspace_id: str, *, month: str | None = None) -> UsageRead:
    month = month or current_month()
    row = (
        await UsageCounter.select()
        .where((UsageCounter.workspace == workspace_id) & (UsageCounter.month == month))
        .first()
    )
    quota = await Workspace.select(Workspace.monthly_token_quota).where(Workspace.id == workspace_id).first()
    return UsageRead(
        month=month,
        llm_calls=row["llm_calls"] if row else 0,
        prompt_tokens=row["prompt_tokens"] if row else 0,
        completion_tokens=row["completion_tokens"] if row else 0,
        local_calls=row["local_calls"] if row else 0,
        monthly_token_quota=(quota or {}).get("monthly_token_quota") or 0,
    )


class LocalCallMeter:
    """Counts local-engine calls in memory; one UPSERT per workspace writes them shortly after."""

    def __init__(self, *, delay_s: float = LOCAL_FLUSH_DELAY_S) -> None:
        self.delay_s = delay_s
        self._pending: dict[tuple[str, str], int] = {}
        self._flusher: asyncio.Task[None] | None = None

    def add(self, workspace_id: str, calls: int = 1) -> None:
        key = (workspace_id, current_month())
        self._pending[key] = self._pending.get(key, 0) + calls
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later(), name="sb-usage-local")

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.delay_s)
        await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (workspace_id, month), calls in pending.items():
            try:
                await _add(workspace_id, local_calls=calls, month=month)
            except Exception:  # metering must never break a turn; the loss is logged with its size
                log.exception(
                    "local usage not recorded",
                    extra={"workspace_id": workspace_id, "month": month, "local_calls": calls},
                )
