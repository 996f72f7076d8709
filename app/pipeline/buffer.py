"""Step 2, the buffer: collect a conversation's messages in Redis, decide when its batch is due, lock it.

Comes from: ingress (app.pipeline.ingress), one `push_many` per committed batch.
Goes to: the scheduler (app.pipeline.schedule) pops due conversations; the flush job
(app.pipeline.flush) takes their locks and closes their windows.

Redis only holds signals here; PostgreSQL holds the messages. A push records that a
conversation has news and when its batch falls due (`SWITCHBOARD_BUFFER_SECONDS` after
the last message, at most `SWITCHBOARD_BUFFER_MAX_SECONDS` after the first). Schedulers
in the workers pop due conversations and enqueue flush jobs of a few dozen each. If Redis
loses its data, or a flush job is lost (swept, aborted, timed out), recovery
(app.pipeline.recovery) re-signals the stored rows no turn holds. Every key here expires: a
window's keys `window_ttl_s` after its last message (they only matter until its batch is
due and locked), a lock `SWITCHBOARD_LOCK_SECONDS` after its last extension.
Ingress signals a whole committed batch, live events included, in one Redis command.
"""

from __future__ import annotations

import math
import secrets
import time

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app.services.redis_conn import Pipeliner

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


# A batch of stored messages in one command. Each signalled message (SET NX on its seen key
# keeps a redelivery from being signalled twice) joins its conversation's buffer and moves
# the conversation's due time; every message, signalled or not, is announced on its live channel.
# KEYS: due, then buffer, first, seen per message
# ARGV: now, quiet s, max s, seen ttl, window ttl, then per message: message id, conversation id,
#       signal (1, or 0 for an amendment), live channel, live payload
# -> 1 per message signalled, else 0
_PUSH_MANY = """
local now = tonumber(ARGV[1])
local pushed = {}
for m = 0, (#KEYS - 1) / 3 - 1 do
  local k, a = 2 + m * 3, 6 + m * 5
  local ok = 0
  if ARGV[a + 2] == '1' and redis.call('SET', KEYS[k + 2], '1', 'NX', 'EX', ARGV[4]) then
    redis.call('RPUSH', KEYS[k], ARGV[a])
    redis.call('EXPIRE', KEYS[k], ARGV[5])
    local first = redis.call('GET', KEYS[k + 1])
    if not first then
      redis.call('SET', KEYS[k + 1], ARGV[1], 'EX', ARGV[5])
      first = ARGV[1]
    end
    redis.call('ZADD', KEYS[1], math.min(now + tonumber(ARGV[2]), tonumber(first) + tonumber(ARGV[3])), ARGV[a + 1])
    ok = 1
  end
  redis.call('PUBLISH', ARGV[a + 3], ARGV[a + 4])
  pushed[m + 1] = ok
end
return pushed
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
# A lock that is gone (Redis lost its data) is taken again: nobody else holds the conversation, and a
# turn mid-way must not be taken for dead because Redis forgot. One that another flush holds is lost.
_EXTEND = """
local held = {}
for i = 1, #KEYS do
  local token = redis.call('GET', KEYS[i])
  if token == ARGV[i + 1] then
    held[i] = redis.call('PEXPIRE', KEYS[i], ARGV[1])
  elseif not token then
    held[i] = redis.call('SET', KEYS[i], ARGV[i + 1], 'NX', 'PX', ARGV[1]) and 1 or 0
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

# KEYS: due, then buffer and lock per conversation   ARGV: conversation ids
# -> one digit per conversation: 1 (due) + 2 (its window's keys are there) + 4 (locked)
_HINTS = """
local flags = {}
for i = 1, #ARGV do
  local f = 0
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then f = f + 1 end
  if redis.call('EXISTS', KEYS[2 * i]) == 1 then f = f + 2 end
  if redis.call('EXISTS', KEYS[2 * i + 1]) == 1 then f = f + 4 end
  flags[i] = f
end
return table.concat(flags)
"""


class Push(msgspec.Struct, frozen=True):
    """One stored message for `Buffer.push_many`; `signal=False` (an edit or a deletion) only announces it."""

    conversation_id: str
    channel_id: str
    provider_message_id: str
    message_id: str
    live: tuple[str, bytes]  # (channel, payload) of its live event, from events.wire
    signal: bool = True


class Hint(msgspec.Struct, frozen=True):
    """What Redis says of a conversation's batch; recovery's hint, never its proof."""

    due: bool  # in the due set: a scheduler pops it
    window: bool  # its window's keys are there: signalled, or popped into a flush job not yet locked
    locked: bool  # a flush holds it (the lock expires unless its turn keeps it alive)


class Buffer:
    """Buffer operations over one Redis client; scripts are registered once."""

    def __init__(self, redis: Redis, *, quiet_s: float, max_s: float, lock_s: float) -> None:
        self.redis = redis
        self.quiet_s = quiet_s
        self.max_s = max_s
        self.lock_s = lock_s
        # A window's keys outlive it: its batch is due `max_s` after the first message at the latest,
        # and its flush job then has a lock's time to take them. Past that recovery no longer reads them.
        self.window_ttl_s = math.ceil(max_s + lock_s) + 1
        self._push_many = redis.register_script(_PUSH_MANY)
        self._pop_due = redis.register_script(_POP_DUE)
        self._acquire_and_take = redis.register_script(_ACQUIRE_AND_TAKE)
        self._extend = redis.register_script(_EXTEND)
        self._release = redis.register_script(_RELEASE)
        self._hints = redis.register_script(_HINTS)

    async def push_many(self, pushes: list[Push]) -> list[bool]:
        """Signal stored messages and publish their live events in one command; whether each was signalled.

        False for an amendment and for a provider id already signalled (a redelivery).
        """
        if not pushes:
            return []
        keys: list[str] = [DUE_KEY]
        args: list = [time.time(), self.quiet_s, self.max_s, SEEN_TTL_S, self.window_ttl_s]
        for push in pushes:
            keys += (
                buffer_key(push.conversation_id),
                first_key(push.conversation_id),
                seen_key(push.channel_id, push.provider_message_id),
            )
            args += (push.message_id, push.conversation_id, 1 if push.signal else 0, *push.live)
        # Called on the client, not a pipeline: EVALSHA, and SCRIPT LOAD only on NoScriptError,
        # with no SCRIPT EXISTS round trip first.
        return [bool(p) for p in await self._push_many(keys=keys, args=args)]

    async def hints(self, conversation_ids: list[str]) -> list[Hint]:
        """What Redis knows of each conversation's batch, in one command.

        A script, not a pipeline of three commands per conversation: recovery asks about up to
        a thousand conversations at each pass while a backlog waits, and redis-py's packing and
        parsing of 3,000 replies cost the worker 71 ms of CPU per pass.
        """
        if not conversation_ids:
            return []
        keys = [DUE_KEY]
        for conversation_id in conversation_ids:
            keys += (buffer_key(conversation_id), lock_key(conversation_id))
        packed = await self._hints(keys=keys, args=conversation_ids)
        flags = packed.decode() if isinstance(packed, bytes) else str(packed)
        return [Hint(due=f in "1357", window=f in "2367", locked=f in "4567") for f in flags]

    async def pop_due(self, *, limit: int = 200, unless_queued: str | None = None) -> list[str]:
        """Take up to `limit` due conversations; none while the Redis list `unless_queued` is not empty."""
        keys = [DUE_KEY, unless_queued] if unless_queued else [DUE_KEY]
        ids = await self._pop_due(keys=keys, args=[time.time(), limit])
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    async def mark_due(
        self, conversation_id: str, *, delay_s: float = 0.0, only_if_absent: bool = False
    ) -> None:
        await self.redis.zadd(DUE_KEY, {conversation_id: time.time() + delay_s}, nx=only_if_absent)

    async def mark_due_many(
        self, conversation_ids: list[str], *, delay_s: float = 0.0, only_if_absent: bool = False
    ) -> None:
        if conversation_ids:
            due_at = time.time() + delay_s
            await self.redis.zadd(DUE_KEY, dict.fromkeys(conversation_ids, due_at), nx=only_if_absent)

    async def acquire_many(self, conversation_ids: list[str]) -> list[str | None]:
        """Take each conversation's lock and close its window (later messages start a new batch).

        One round trip for all; a lock token for each, or None where another flush holds the lock.
        """
        if not conversation_ids:
            return []
        tokens = [secrets.token_hex(8) for _ in conversation_ids]
        keys = [k for c in conversation_ids for k in (lock_key(c), buffer_key(c), first_key(c))]
        taken = await self._acquire_and_take(keys=keys, args=[int(self.lock_s * 1000), *tokens])
        return [token if ok else None for token, ok in zip(tokens, taken)]

    async def extend_many(self, tokens: dict[str, str]) -> list[bool]:
        """Extend several locks (conversation id -> token) in one round trip; whether each is still held."""
        if not tokens:
            return []
        held = await self._extend(
            keys=[lock_key(c) for c in tokens], args=[int(self.lock_s * 1000), *tokens.values()]
        )
        return [bool(h) for h in held]

    async def release(self, conversation_id: str, token: str) -> None:
        await self._release(keys=[lock_key(conversation_id)], args=[token])

    async def release_with(
        self, pipeliner: Pipeliner, conversation_id: str, token: str, commands: list[tuple]
    ) -> None:
        """Release the lock, sending `commands` (a turn's live events) in the same round trip."""
        try:
            # EVALSHA itself: a registered script would first ask SCRIPT EXISTS.
            await pipeliner.execute(
                *commands, ("EVALSHA", self._release.sha, 1, lock_key(conversation_id), token)
            )
        except NoScriptError:  # Redis restarted since the script was loaded; the commands went out
            await self.release(conversation_id, token)
