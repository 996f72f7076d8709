"""Per-workspace LLM settings (model, base URL, API key, monthly token quota): read, update, resolve for a call.

Which settings apply: a workspace's own API key goes with its own base URL (or the
environment's, when it sets none). The environment's `OPENAI_API_KEY` is only ever sent to the
environment's `OPENAI_BASE_URL`: a workspace cannot point the operator's key at a server of its
choosing, so its base URL without its own key is stored but not used. The model is the
workspace's when set, else `SWITCHBOARD_LLM_MODEL`.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from piccolo.columns import Column

from app.db import engine
from app.db.tables import Workspace
from app.http import guard as netguard
from app.services import secrets
from app.services.ai.llm import LLMConfig
from app.services.ai.usage import current_month
from app.settings import get_settings

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class LLMSettingsError(ValueError):
    """The submitted settings cannot be saved; the message says what to change."""


class LLMSettingsRead(msgspec.Struct, frozen=True, kw_only=True):
    """What applies to the workspace now; the key itself is never returned."""

    model: str
    base_url: str
    key_set: bool
    monthly_token_quota: int = 0
    """0 = no quota."""


class LLMSettingsUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model: str = ""
    """Empty: `SWITCHBOARD_LLM_MODEL`."""
    base_url: str = ""
    """Empty: `OPENAI_BASE_URL` (or api.openai.com)."""
    api_key: str | None = None
    """None keeps the stored key; "" removes it (the environment's key, if any, applies again)."""
    monthly_token_quota: int | None = None
    """None keeps the stored quota; 0 removes it."""


class WorkspaceLLM(msgspec.Struct, frozen=True, kw_only=True):
    """What one call needs: the LLM to use (None = none configured), the quota and this month's tokens."""

    config: LLMConfig | None
    monthly_token_quota: int = 0
    tokens_used: int = 0

    @property
    def over_quota(self) -> bool:
        return 0 < self.monthly_token_quota <= self.tokens_used


def _effective(key_enc: str, base_url: str, model: str) -> LLMConfig | None:
    ai = get_settings().ai
    own_key = secrets.decrypt(key_enc) if key_enc else ""
    model = model or ai.model
    if own_key:
        return LLMConfig(api_key=own_key, base_url=base_url or ai.openai_base_url, model=model)
    if ai.openai_api_key:
        return LLMConfig(api_key=ai.openai_api_key, base_url=ai.openai_base_url, model=model)
    return None


def _read(row: dict) -> LLMSettingsRead:
    config = _effective(row["llm_api_key_enc"], row["llm_base_url"], row["llm_model"])
    ai = get_settings().ai
    base_url = (config.base_url if config else row["llm_base_url"] or ai.openai_base_url) or DEFAULT_BASE_URL
    return LLMSettingsRead(
        model=row["llm_model"] or ai.model,
        base_url=base_url,
        key_set=config is not None,
        monthly_token_quota=row["monthly_token_quota"] or 0,
    )


_COLUMNS = (
    Workspace.llm_api_key_enc,
    Workspace.llm_base_url,
    Workspace.llm_model,
    Workspace.monthly_token_quota,
)


async def _row(workspace_id: str) -> dict:
    row = await Workspace.select(*_COLUMNS).where(Workspace.id == workspace_id).first()
    if row is None:
        raise LookupError(f"workspace {workspace_id} does not exist")
    return row


async def get(workspace_id: str) -> LLMSettingsRead:
    return _read(await _row(workspace_id))


async def update(workspace_id: str, data: LLMSettingsUpdate) -> LLMSettingsRead:
    base_url = data.base_url.strip().rstrip("/")
    if base_url:
        try:
            await netguard.check_url(base_url, allow_private=get_settings().webhooks.allow_private)
        except netguard.BlockedURLError as exc:
            raise LLMSettingsError(f"base_url: {exc.reason}") from exc
        except OSError as exc:
            raise LLMSettingsError(f"base_url: the host does not resolve ({exc}); check the URL") from exc
    if data.monthly_token_quota is not None and data.monthly_token_quota < 0:
        raise LLMSettingsError("monthly_token_quota: use 0 for no quota, or a positive number of tokens")
    values: dict[Column | str, Any] = {
        Workspace.llm_model: data.model.strip(),
        Workspace.llm_base_url: base_url,
    }
    if data.api_key is not None:
        values[Workspace.llm_api_key_enc] = secrets.encrypt(data.api_key.strip())
    if data.monthly_token_quota is not None:
        values[Workspace.monthly_token_quota] = data.monthly_token_quota
    updated = await Workspace.update(values).where(Workspace.id == workspace_id).returning(Workspace.id)
    if not updated:
        raise LookupError(f"workspace {workspace_id} does not exist")
    return await get(workspace_id)


_RESOLVE = """
SELECT w.llm_api_key_enc, w.llm_base_url, w.llm_model, w.monthly_token_quota,
       coalesce(u.prompt_tokens + u.completion_tokens, 0) AS tokens_used
  FROM workspaces w LEFT JOIN usage_counters u ON u.workspace = w.id AND u.month = $2
 WHERE w.id = $1
"""


async def resolve(workspace_id: str) -> WorkspaceLLM:
    """The LLM a call of this workspace uses now, with its quota (one statement, on the service's pool)."""
    row = await engine.pool().fetchrow(_RESOLVE, uuid.UUID(workspace_id), current_month())
    if row is None:
        return WorkspaceLLM(config=_effective("", "", ""))
    return WorkspaceLLM(
        config=_effective(row["llm_api_key_enc"], row["llm_base_url"], row["llm_model"]),
        monthly_token_quota=row["monthly_token_quota"] or 0,
        tokens_used=row["tokens_used"],
    )
