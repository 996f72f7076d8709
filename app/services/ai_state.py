"""The AI state keys read by outside consumers: `ai_control_{id}` and `ai_context_{id}`."""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis

from app.services.redis_conn import Pipeliner


def control_key(conversation_id: str) -> str:
    return f"ai_control_{conversation_id}"


def context_key(conversation_id: str) -> str:
    return f"ai_context_{conversation_id}"


def history_key(conversation_id: str) -> str:
    return f"sb:ai:history:{conversation_id}"


class AIControl(msgspec.Struct, frozen=True):
    """The exact JSON of `ai_control_{id}`."""

    ai_enabled: bool = True
    custom_prompt: str | None = None


# Merging in Lua keeps read-modify-write atomic when two turns touch one conversation.
# KEYS: context   ARGV: patch JSON, ttl s
_MERGE = """
local current = redis.call('GET', KEYS[1])
local merged = {}
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then merged = decoded end
end
local patch = cjson.decode(ARGV[1])
for k, v in pairs(patch) do merged[k] = v end
local encoded = cjson.encode(merged)
if encoded == '[]' then encoded = '{}' end
redis.call('SET', KEYS[1], encoded, 'EX', ARGV[2])
return encoded
"""

_encode = msgspec.json.Encoder().encode
_control_decoder = msgspec.json.Decoder(AIControl)


class AIStateStore:
    def __init__(self, redis: Redis, *, ttl_s: int, pipeliner: Pipeliner) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.pipeliner = pipeliner  # turns read their state together
        self._merge = redis.register_script(_MERGE)

    async def read(self, conversation_id: str) -> tuple[AIControl, dict[str, Any]]:
        control, context, _ = await self.read_with(conversation_id, [])
        return control, context

    async def read_with(
        self, conversation_id: str, keys: list[str]
    ) -> tuple[AIControl, dict[str, Any], list[Any]]:
        """`read`, plus the raw values of other keys in the same round trip."""
        [(control_raw, context_raw, *others)] = await self.pipeliner.execute(
            ("MGET", control_key(conversation_id), context_key(conversation_id), *keys)
        )
        control = AIControl()
        if control_raw:
            try:
                control = _control_decoder.decode(control_raw)
            except msgspec.DecodeError:
                control = AIControl()  # written by someone else in another shape: start from defaults
        context: dict[str, Any] = {}
        if context_raw:
            try:
                decoded = msgspec.json.decode(context_raw)
                context = decoded if isinstance(decoded, dict) else {}
            except msgspec.DecodeError:
                context = {}
        return control, context, others

    async def write_control(self, conversation_id: str, control: AIControl) -> None:
        await self.redis.set(control_key(conversation_id), _encode(control), ex=self.ttl_s)

    async def merge_context(self, conversation_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        merged = await self._merge(keys=[context_key(conversation_id)], args=[_encode(patch), self.ttl_s])
        return msgspec.json.decode(merged)

    async def reset_context(self, conversation_id: str) -> None:
        await self.redis.delete(context_key(conversation_id), history_key(conversation_id))

    async def append_history(self, conversation_id: str, *, role: str, text: str, keep: int) -> None:
        key = history_key(conversation_id)
        entry = _encode({"role": role, "text": text})
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(key, entry)
        pipe.ltrim(key, -keep, -1)
        pipe.expire(key, self.ttl_s)
        await pipe.execute()

    async def history(self, conversation_id: str) -> list[dict[str, str]]:
        return [msgspec.json.decode(e) for e in await self.redis.lrange(history_key(conversation_id), 0, -1)]
