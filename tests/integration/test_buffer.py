"""The buffer's batch push against the real Redis: signals, due times, seen keys and live events."""

from __future__ import annotations

import time
import uuid

import msgspec

from app.pipeline import buffer as buffer_mod
from app.services import events

# Long windows: the test stack's schedulers share this Redis and must not pop these conversations.
QUIET_S = 3600.0
MAX_S = 4000.0


def _push(
    workspace_id: str, channel_id: str, conversation_id: str, provider_message_id: str, *, signal: bool = True
) -> buffer_mod.Push:
    message_id = str(uuid.uuid4())
    live = events.wire(
        workspace_id,
        events.LiveEvent(kind="message", conversation_id=conversation_id, data={"message_id": message_id}),
    )
    return buffer_mod.Push(
        conversation_id=conversation_id,
        channel_id=channel_id,
        provider_message_id=provider_message_id,
        message_id=message_id,
        live=live,
        signal=signal,
    )


async def _received(pubsub, count: int, *, timeout_s: float = 5.0) -> list[events.LiveEvent]:
    decoder = msgspec.json.Decoder(events.LiveEvent)
    got: list[events.LiveEvent] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            got.append(decoder.decode(message["data"]))
        elif len(got) >= count:
            break  # one quiet interval after the expected count: nothing more is coming
    return got


async def test_push_many_signals_once_skips_amendments_and_announces_every_message(redis) -> None:
    workspace_id, channel_id = str(uuid.uuid4()), str(uuid.uuid4())
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    buffer = buffer_mod.Buffer(redis, quiet_s=QUIET_S, max_s=MAX_S, lock_s=5)
    b_first = time.time() - 1000  # b's window opened earlier: its due time is capped by MAX_S
    await redis.set(buffer_mod.first_key(b), b_first)
    batch = [
        _push(workspace_id, channel_id, a, "wamid.1"),
        _push(workspace_id, channel_id, a, "wamid.2"),
        _push(workspace_id, channel_id, b, "wamid.3"),
        _push(workspace_id, channel_id, a, "wamid.1"),  # redelivered within the batch
        _push(workspace_id, channel_id, b, "wamid.4", signal=False),  # an edit: announced, not signalled
    ]
    pubsub = redis.pubsub()
    await pubsub.subscribe(events.channel_name(workspace_id))
    try:
        before = time.time()
        assert await buffer.push_many(batch) == [True, True, True, False, False]
        after = time.time()

        assert await redis.lrange(buffer_mod.buffer_key(a), 0, -1) == [
            batch[0].message_id,
            batch[1].message_id,
        ]
        assert await redis.lrange(buffer_mod.buffer_key(b), 0, -1) == [batch[2].message_id]
        assert before + QUIET_S <= await redis.zscore(buffer_mod.DUE_KEY, a) <= after + QUIET_S
        assert abs(await redis.zscore(buffer_mod.DUE_KEY, b) - (b_first + MAX_S)) < 0.01
        seen = [await redis.exists(buffer_mod.seen_key(channel_id, f"wamid.{n}")) for n in (1, 2, 3, 4)]
        assert seen == [1, 1, 1, 0]
        # A window's keys expire by themselves: a flush job lost before it took them strands nothing in Redis.
        assert buffer.window_ttl_s == int(MAX_S + 5) + 1
        for key in (buffer_mod.buffer_key(a), buffer_mod.first_key(a), buffer_mod.buffer_key(b)):
            assert 0 < await redis.ttl(key) <= buffer.window_ttl_s, key

        live = await _received(pubsub, len(batch))
        assert [(e.conversation_id, e.data["message_id"]) for e in live] == [
            (p.conversation_id, p.message_id) for p in batch
        ]
        assert {e.kind for e in live} == {"message"}

        # A later redelivery is not signalled again, and an empty batch sends nothing.
        redelivered = _push(workspace_id, channel_id, a, "wamid.2")
        assert await buffer.push_many([redelivered]) == [False]
        assert await buffer.push_many([]) == []
        assert await redis.llen(buffer_mod.buffer_key(a)) == 2
        assert [e.data["message_id"] for e in await _received(pubsub, 1)] == [redelivered.message_id]
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()
        await redis.zrem(buffer_mod.DUE_KEY, a, b)
        await redis.delete(
            *(k for c in (a, b) for k in (buffer_mod.buffer_key(c), buffer_mod.first_key(c))),
            *(buffer_mod.seen_key(channel_id, f"wamid.{n}") for n in (1, 2, 3, 4)),
        )


async def test_a_lock_redis_forgot_is_taken_again_but_never_one_another_flush_holds(redis) -> None:
    """Keeping a lock alive after a Redis flush takes it again (the turn is not taken for dead because Redis
    forgot); a lock another flush took meanwhile stays that flush's."""
    buffer = buffer_mod.Buffer(redis, quiet_s=QUIET_S, max_s=MAX_S, lock_s=5)
    forgotten, taken = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        [forgotten_token, taken_token] = await buffer.acquire_many([forgotten, taken])
        assert forgotten_token and taken_token
        await redis.delete(buffer_mod.lock_key(forgotten))
        await redis.set(buffer_mod.lock_key(taken), "another-flush")
        assert await buffer.extend_many({forgotten: forgotten_token, taken: taken_token}) == [True, False]
        assert await redis.get(buffer_mod.lock_key(forgotten)) == forgotten_token
        assert 0 < await redis.pttl(buffer_mod.lock_key(forgotten)) <= 5000
        assert await redis.get(buffer_mod.lock_key(taken)) == "another-flush"
    finally:
        await redis.delete(buffer_mod.lock_key(forgotten), buffer_mod.lock_key(taken))


async def test_hints_say_for_each_conversation_whether_it_is_due_buffered_or_locked(redis) -> None:
    buffer = buffer_mod.Buffer(redis, quiet_s=QUIET_S, max_s=MAX_S, lock_s=5)
    nothing, due, buffered, locked, everything = (str(uuid.uuid4()) for _ in range(5))
    # Due far in the future: the test stack's schedulers share this Redis and must not pop them.
    await redis.zadd(buffer_mod.DUE_KEY, {due: time.time() + 3600, everything: time.time() + 3600})
    for conversation in (buffered, everything):
        await redis.set(buffer_mod.buffer_key(conversation), "m", ex=60)
    for conversation in (locked, everything):
        await redis.set(buffer_mod.lock_key(conversation), "token", ex=60)
    try:
        hints = await buffer.hints([nothing, due, buffered, locked, everything, nothing])
        assert [(h.due, h.window, h.locked) for h in hints] == [
            (False, False, False),
            (True, False, False),
            (False, True, False),
            (False, False, True),
            (True, True, True),
            (False, False, False),
        ]
        assert await buffer.hints([]) == []
    finally:
        await redis.zrem(buffer_mod.DUE_KEY, due, everything)
        await redis.delete(
            *(buffer_mod.buffer_key(c) for c in (buffered, everything)),
            *(buffer_mod.lock_key(c) for c in (locked, everything)),
        )
