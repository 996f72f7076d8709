"""The per-conversation buffer in Redis: collect messages, decide when a batch is due, lock it.

Redis only holds signals here; PostgreSQL holds the messages. A push records that a
conversation has news and when its batch falls due (`SWITCHBOARD_BUFFER_SECONDS` after
the last message, at most `SWITCHBOARD_BUFFER_MAX_SECONDS` after the first). Schedulers
in the workers pop due conversations and enqueue flush jobs of a few dozen each. If Redis
loses its data, `WorkerState.recover_once` (app.services.jobs) re-signals unprocessed rows.
"""

from __future__ import annotations

import secrets
import time

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

DUE_KEY = "sb:due"
SEEN_TTL_S = 24 * 3600


def buffer_key(conversation_id: str) -> str:
    return f"sb:buf:{conversation_id}"


def first_key(conversation_id: str) -> str:
    return f"sb:buf:first:{conversation_id}"


def lock_key(conversation_id: str) -> str:
    return f"sb:lock:{conversation_id}"


def seen_key(channel_id: str, provider_message_id: str) -> str:
    return f"sb:seen:{channel_id}:{provider_message_id}"


# KEYS: buffer, first, due, seen   ARGV: message id, now, quiet s, max s, seen ttl, conversation id
_PUSH = """
if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[5]) == false then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
local first = redis.call('GET', KEYS[2])
if not first then
  redis.call('SET', KEYS[2], ARGV[2])
  first = ARGV[2]
end
local due = math.min(tonumber(ARGV[2]) + tonumber(ARGV[3]), tonumber(first) + tonumber(ARGV[4]))
redis.call('ZADD', KEYS[3], due, ARGV[6])
return 1
"""

# KEYS: due, queued job list (optional)   ARGV: now, limit
# While flush jobs wait in the queue the workers are saturated: leaving conversations in the
# due set lets their later messages join the same batch instead of queueing empty jobs.
_POP_DUE = """
if KEYS[2] and redis.call('LLEN', KEYS[2]) > 0 then return {} end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return ids
"""

# Take each lock and close its window in one step; many conversations in one call.
# KEYS: lock, buffer, first (per conversation)   ARGV: ttl ms, token (per conversation)
# -> 1 per conversation whose lock was taken, else 0
_ACQUIRE_AND_TAKE = """
local taken = {}
for i = 1, #KEYS, 3 do
  if redis.call('SET', KEYS[i], ARGV[(i + 2) / 3 + 1], 'NX', 'PX', ARGV[1]) then
    redis.call('DEL', KEYS[i + 1], KEYS[i + 2])
    taken[#taken + 1] = 1
  else
    taken[#taken + 1] = 0
  end
end
return taken
"""

# KEYS: lock (per conversation)   ARGV: ttl ms, token (per conversation)   -> 1 per lock still held
_EXTEND = """
local held = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    held[i] = redis.call('PEXPIRE', KEYS[i], ARGV[1])
  else
    held[i] = 0
  end
end
return held
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Buffer:
    """Buffer operations over one Redis client; scripts are registered once."""

    def __init__(self, redis: Redis, *, quiet_s: float, max_s: float, lock_s: float) -> None:
        self.redis = redis
        self.quiet_s = quiet_s
        self.max_s = max_s
        self.lock_s = lock_s
        self._push = redis.register_script(_PUSH)
        self._pop_due = redis.register_script(_POP_DUE)
        self._acquire_and_take = redis.register_script(_ACQUIRE_AND_TAKE)
        self._extend = redis.register_script(_EXTEND)
        self._release = redis.register_script(_RELEASE)

    async def push(self, *, conversation_id: str, channel_id: str, provider_message_id: str, message_id: str) -> bool:
        """Signal a stored message; False when this provider id was already pushed."""
        keys = [buffer_key(conversation_id), first_key(conversation_id), DUE_KEY,
                seen_key(channel_id, provider_message_id)]
        args = [message_id, time.time(), self.quiet_s, self.max_s, SEEN_TTL_S, conversation_id]
        return bool(await self._push(keys=keys, args=args))

    async def push_in(self, pipe, *, conversation_id: str, channel_id: str, provider_message_id: str,
                      message_id: str) -> None:
        """Queue a push on a pipeline, so a batch of messages costs one round trip."""
        keys = [buffer_key(conversation_id), first_key(conversation_id), DUE_KEY,
                seen_key(channel_id, provider_message_id)]
        args = [message_id, time.time(), self.quiet_s, self.max_s, SEEN_TTL_S, conversation_id]
        await self._push(keys=keys, args=args, client=pipe)  # buffered: runs on pipe.execute()

    async def in_flight(self, conversation_ids: list[str]) -> list[bool]:
        """Whether Redis still knows about each conversation's batch (signalled, due or locked)."""
        if not conversation_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for conversation_id in conversation_ids:
            pipe.zscore(DUE_KEY, conversation_id)
            pipe.exists(buffer_key(conversation_id), lock_key(conversation_id))
        replies = await pipe.execute()
        return [replies[i] is not None or replies[i + 1] > 0 for i in range(0, len(replies), 2)]

    async def pop_due(self, *, limit: int = 200, unless_queued: str | None = None) -> list[str]:
        """Take up to `limit` due conversations; none while the Redis list `unless_queued` is not empty."""
        keys = [DUE_KEY, unless_queued] if unless_queued else [DUE_KEY]
        ids = await self._pop_due(keys=keys, args=[time.time(), limit])
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    async def mark_due(self, conversation_id: str, *, delay_s: float = 0.0, only_if_absent: bool = False) -> None:
        await self.redis.zadd(DUE_KEY, {conversation_id: time.time() + delay_s}, nx=only_if_absent)

    async def mark_due_many(self, conversation_ids: list[str], *, delay_s: float = 0.0) -> None:
        if conversation_ids:
            due_at = time.time() + delay_s
            await self.redis.zadd(DUE_KEY, {c: due_at for c in conversation_ids})

    async def acquire(self, conversation_id: str) -> str | None:
        """Take the conversation's lock and close its window (later messages start a new batch).

        Returns the lock's token, or None when another flush holds the lock.
        """
        return (await self.acquire_many([conversation_id]))[0]

    async def acquire_many(self, conversation_ids: list[str]) -> list[str | None]:
        """`acquire` for several conversations in one round trip; a token or None for each."""
        if not conversation_ids:
            return []
        tokens = [secrets.token_hex(8) for _ in conversation_ids]
        keys = [k for c in conversation_ids for k in (lock_key(c), buffer_key(c), first_key(c))]
        taken = await self._acquire_and_take(keys=keys, args=[int(self.lock_s * 1000), *tokens])
        return [token if ok else None for token, ok in zip(tokens, taken)]

    async def extend(self, conversation_id: str, token: str) -> bool:
        return (await self.extend_many({conversation_id: token}))[0]

    async def extend_many(self, tokens: dict[str, str]) -> list[bool]:
        """Extend several locks (conversation id -> token) in one round trip; whether each is still held."""
        if not tokens:
            return []
        held = await self._extend(keys=[lock_key(c) for c in tokens], args=[int(self.lock_s * 1000), *tokens.values()])
        return [bool(h) for h in held]

    async def release(self, conversation_id: str, token: str, *, pipe=None) -> None:
        """Release the lock; commands already queued on `pipe` go in the same round trip."""
        if pipe is None:
            await self._release(keys=[lock_key(conversation_id)], args=[token])
            return
        # EVALSHA straight on the pipeline: a registered script would cost a SCRIPT EXISTS
        # round trip per pipeline.
        pipe.evalsha(self._release.sha, 1, lock_key(conversation_id), token)
        try:
            await pipe.execute()
        except NoScriptError:  # Redis restarted since the script was loaded
            await self._release(keys=[lock_key(conversation_id)], args=[token])
