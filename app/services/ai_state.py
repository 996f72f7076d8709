"""A conversation's AI state: its truth in PostgreSQL, its published copy in `ai_control_{id}` / `ai_context_{id}`.

Outside consumers read the two Redis keys (DESIGN.md fixes their names and JSON). Every write
goes to the `conversations` row first and to the keys after; a reader that finds a key
missing (a Redis flush, or its 24 h TTL) writes it again from the row. So losing Redis
changes nothing a customer sees: a handed-off conversation stays handed off.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.services.redis_conn import Pipeliner
from app.services.values import parse_uuid

log = logging.getLogger(__name__)


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


class StoredAIState(msgspec.Struct, frozen=True):
    """A conversation's AI state as PostgreSQL holds it."""

    control: AIControl = AIControl()
    context: dict[str, Any] = {}
    # Whether the control was ever set: only then is `ai_control_{id}` published (a conversation
    # nobody touched has no key, as before the state lived in PostgreSQL).
    control_set: bool = False


def state_of(row: Any) -> StoredAIState:
    """The AI state from a row with the columns `ai_enabled, custom_prompt, ai_context, ai_control_at`."""
    context = row["ai_context"]
    if context is not None and not isinstance(context, dict):
        # Only an object is a context; an array once stored by an unchecked form reads as none.
        log.warning("ai_context is not a JSON object; read as empty", extra={"type": type(context).__name__})
        context = None
    return StoredAIState(
        control=AIControl(ai_enabled=row["ai_enabled"], custom_prompt=row["custom_prompt"]),
        context=context or {},
        control_set=row["ai_control_at"] is not None,
    )


# The columns of the state, as every statement here returns them (and the turn's start and the
# conversation page read them with their own row: `state_of`).
STATE_COLUMNS = "ai_enabled, custom_prompt, ai_context, ai_control_at"

# One statement for every change, from a flow or an agent: $3 enabled (NULL keeps it), $4 set the
# prompt to $5, $6 reset the context, $7 a patch merged into it (NULL: none). $8 is a turn's fencing
# token (NULL for an agent): a turn that no longer holds the conversation changes nothing
# (app.pipeline.ledger).
_UPDATE = f"""
UPDATE conversations
   SET ai_enabled = coalesce($3, ai_enabled),
       custom_prompt = CASE WHEN $4 THEN $5 ELSE custom_prompt END,
       ai_control_at = CASE WHEN $3 IS NOT NULL OR $4 THEN clock_timestamp() ELSE ai_control_at END,
       ai_context = CASE WHEN $6 THEN '{{}}'::jsonb ELSE ai_context END || coalesce($7::jsonb, '{{}}'::jsonb)
 WHERE id = $1 AND workspace = $2 AND ($8::bigint IS NULL OR lease_epoch = $8)
RETURNING {STATE_COLUMNS}
"""

# Present while Redis holds the published copy; gone after a flush, or on a Redis that only an
# earlier version (whose keys were the only copy) wrote to.
PUBLISHED_MARK = "sb:ai:published"
# The states whose keys would still be in Redis: set, and changed or used within the keys' TTL.
_RECENT = f"""
SELECT id, {STATE_COLUMNS} FROM conversations
 WHERE (ai_control_at IS NOT NULL OR ai_context <> '{{}}'::jsonb)
   AND greatest(ai_control_at, last_message_at) > now() - make_interval(secs => $1)
"""
# Keys PostgreSQL has no state for are taken over; a state PostgreSQL has is never replaced.
_ADOPT_CONTROL = """
UPDATE conversations c SET ai_enabled = k.ai_enabled, custom_prompt = k.custom_prompt, ai_control_at = clock_timestamp()
  FROM unnest($1::uuid[], $2::bool[], $3::text[]) AS k(id, ai_enabled, custom_prompt)
 WHERE c.id = k.id AND c.ai_control_at IS NULL
"""
_ADOPT_CONTEXT = """
UPDATE conversations c SET ai_context = k.context
  FROM unnest($1::uuid[], $2::jsonb[]) AS k(id, context)
 WHERE c.id = k.id AND c.ai_context = '{}'::jsonb
"""
_CHUNK = 500

_encode = msgspec.json.Encoder().encode
_control_decoder = msgspec.json.Decoder(AIControl)


class AIStateStore:
    """Reads and writes AI state: PostgreSQL first, then the published keys; one per process."""

    def __init__(self, db: asyncpg.Pool, redis: Redis, *, ttl_s: int, pipeliner: Pipeliner) -> None:
        self.db = db
        self.redis = redis
        self.ttl_s = ttl_s
        self.pipeliner = pipeliner  # turns check their keys together

    async def read_with(self, conversation_id: str, state: StoredAIState, keys: list[str]) -> list[Any]:
        """The raw values of `keys`, read in the round trip that checks `state`'s published copy.

        A turn already has `state` from PostgreSQL (read with its claim); a key Redis lost is
        written again here, so outside consumers see it as before.
        """
        [(control_raw, context_raw, *others)] = await self.pipeliner.execute(
            ("MGET", control_key(conversation_id), context_key(conversation_id), *keys)
        )
        republish_control = control_raw is None and state.control_set
        republish_context = context_raw is None and bool(state.context)
        if republish_control or republish_context:
            await self._publish(
                conversation_id,
                state,
                control=republish_control,
                context=republish_context,
                drop_history=False,
                only_missing=True,  # a write since our read is newer: keep it
            )
        return others

    async def restore_published(self) -> int:
        """Put the published copy back when Redis lost it; how many conversations' keys were written.

        A no-op while `sb:ai:published` exists (recovery calls this on every pass). Otherwise:
        keys found for conversations PostgreSQL has no state for (written by an earlier version,
        when the keys were the only copy) are adopted first; then the keys of every state set
        and changed or used within their TTL are written where missing.
        """
        # The mark expires like every hint: once a TTL the keys are checked again anyway.
        if not await self.redis.set(PUBLISHED_MARK, "1", nx=True, ex=self.ttl_s):
            return 0
        adopted = await self._adopt_keys()
        rows = await self.db.fetch(_RECENT, self.ttl_s)
        for start in range(0, len(rows), _CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for row in rows[start : start + _CHUNK]:
                state, conversation_id = state_of(row), str(row["id"])
                if state.control_set:
                    pipe.set(control_key(conversation_id), _encode(state.control), ex=self.ttl_s, nx=True)
                if state.context:
                    pipe.set(context_key(conversation_id), _encode(state.context), ex=self.ttl_s, nx=True)
            await pipe.execute()
        log.info("AI state keys published again", extra={"conversations": len(rows), "adopted": adopted})
        return len(rows)

    async def _adopt_keys(self) -> int:
        adopted = 0
        for prefix, statement, decode in (
            ("ai_control_", _ADOPT_CONTROL, _control_columns),
            ("ai_context_", _ADOPT_CONTEXT, _context_columns),
        ):
            keys = [k async for k in self.redis.scan_iter(match=f"{prefix}*", count=1000)]
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                columns: list[list[Any]] = []
                for key, raw in zip(chunk, await self.redis.mget(chunk)):
                    name = key.decode() if isinstance(key, bytes) else key
                    conversation = parse_uuid(name.removeprefix(prefix))
                    values = decode(raw) if raw is not None and conversation is not None else None
                    if values is None:
                        log.warning("AI state key not adopted: not ours or unreadable", extra={"key": name})
                        continue
                    columns.append([conversation, *values])
                if columns:
                    await self.db.execute(statement, *map(list, zip(*columns)))
                    adopted += len(columns)
        return adopted

    async def update(
        self,
        workspace_id: str,
        conversation_id: str,
        *,
        ai_enabled: bool | None = None,
        custom_prompt: str | None = None,
        set_prompt: bool = False,
        reset_context: bool = False,
        patch: dict[str, Any] | None = None,
        epoch: int | None = None,
    ) -> StoredAIState | None:
        """Change the state in PostgreSQL, then publish it; None when the conversation is not the workspace's,
        or (with a turn's `epoch`) when another turn holds it.

        `set_prompt` replaces the custom prompt with `custom_prompt` (None clears it).
        """
        row = await self.db.fetchrow(
            _UPDATE,
            uuid.UUID(conversation_id),
            uuid.UUID(workspace_id),
            ai_enabled,
            set_prompt,
            custom_prompt,
            reset_context,
            patch,
            epoch,
        )
        if row is None:
            return None
        state = state_of(row)
        await self._publish(
            conversation_id,
            state,
            control=ai_enabled is not None or set_prompt,
            context=reset_context or bool(patch),
            drop_history=reset_context,
        )
        return state

    async def _publish(
        self,
        conversation_id: str,
        state: StoredAIState,
        *,
        control: bool,
        context: bool,
        drop_history: bool,
        only_missing: bool = False,
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        if control:
            pipe.set(control_key(conversation_id), _encode(state.control), ex=self.ttl_s, nx=only_missing)
        if context:
            if state.context:
                pipe.set(context_key(conversation_id), _encode(state.context), ex=self.ttl_s, nx=only_missing)
            else:  # an empty context is no key, as a reset always left it
                pipe.delete(context_key(conversation_id))
        if drop_history:
            pipe.delete(history_key(conversation_id))
        await pipe.execute()

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


def _control_columns(raw: bytes | str) -> list[Any] | None:
    try:
        control = _control_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    return [control.ai_enabled, control.custom_prompt]


def _context_columns(raw: bytes | str) -> list[Any] | None:
    try:
        context = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return [context] if isinstance(context, dict) and context else None
