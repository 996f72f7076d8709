"""AI control and context live in PostgreSQL; the `ai_control_{id}` / `ai_context_{id}` keys are their copy.

A Redis flush (this session's own database, never the server) must change nothing a customer
sees: a handed-off conversation stays handed off, and the keys come back as they were.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.integration.test_flows_service import conversation_of, replies
from tests.support.stack import OWNER_KEY, Tenant, wait_until

pytestmark = pytest.mark.slow


def handoff_flow() -> dict:
    """ "human" -> AI off, a note in its context, and a reply; anything else goes to the AI."""
    return {
        "schema": "switchboard.flow/v1",
        "name": "Hand-off",
        "status": "active",
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["human"]}},
                "position": {"x": 0, "y": 0},
            },
            {"id": "off", "type": "action.control_ai_response", "config": {"action": "disable"}},
            {
                "id": "ctx",
                "type": "action.update_ai_context",
                "config": {"context_data": {"handoff": "asked"}},
            },
            {
                "id": "say",
                "type": "action.send_message",
                "config": {"text": "A person will answer you.", "message_type": "support"},
            },
        ],
        "edges": [{"from": "t", "to": "off"}, {"from": "off", "to": "ctx"}, {"from": "ctx", "to": "say"}],
    }


async def _flush_own_redis(redis) -> None:
    """FLUSHDB of the session's claimed database only; the claim itself is put back."""
    await redis.flushdb()
    await redis.set(OWNER_KEY, os.getpid(), ex=3600)


async def _completed_runs(db, conversation_id: str, count: int) -> None:
    await wait_until(
        lambda: db.fetchval(
            "SELECT count(*) >= $2 FROM runs WHERE conversation = $1 AND status = 'completed'",
            uuid.UUID(conversation_id),
            count,
        ),
        what=f"{count} completed turns",
    )


async def test_a_redis_flush_does_not_wake_the_ai_of_a_handed_off_conversation(
    tenant: Tenant, db, redis
) -> None:
    await tenant.create_flow(handoff_flow())
    channel = await tenant.generic_channel()
    await tenant.send_generic(channel, text="I want a human", sender="+1555700")
    conversation_id = await conversation_of(tenant, db, "+1555700")
    [told] = await replies(tenant, conversation_id, 1)
    assert told["text"] == "A person will answer you."
    assert json.loads(await redis.get(f"ai_control_{conversation_id}")) == {
        "ai_enabled": False,
        "custom_prompt": None,
    }

    await _flush_own_redis(redis)
    assert await redis.get(f"ai_control_{conversation_id}") is None

    await tenant.send_generic(channel, text="what does the premium plan cost?", sender="+1555700")
    await _completed_runs(db, conversation_id, 2)
    detail = (await tenant.http.get(f"/api/conversations/{conversation_id}")).json()
    assert [m["text"] for m in detail["messages"] if m["direction"] == "out"] == ["A person will answer you."]
    assert detail["ai"] == {"ai_enabled": False, "custom_prompt": None, "context": {"handoff": "asked"}}
    # The turn published the keys again, as outside consumers read them.
    assert json.loads(await redis.get(f"ai_control_{conversation_id}")) == {
        "ai_enabled": False,
        "custom_prompt": None,
    }
    assert json.loads(await redis.get(f"ai_context_{conversation_id}")) == {"handoff": "asked"}
    assert 0 < await redis.ttl(f"ai_control_{conversation_id}") <= 24 * 3600


async def test_an_agent_switching_the_ai_off_survives_a_redis_flush(tenant: Tenant, db, redis) -> None:
    channel = await tenant.generic_channel()
    await tenant.send_generic(channel, text="hello there", sender="+1555710")
    conversation_id = await conversation_of(tenant, db, "+1555710")
    [first] = await replies(tenant, conversation_id, 1)
    assert first["message_type"] == "ai"  # the AI answers while it is on

    response = await tenant.http.put(
        f"/api/conversations/{conversation_id}/ai",
        json={"ai_enabled": False, "custom_prompt": "Be brief.", "context": {"agent": "Grace"}},
    )
    assert response.status_code == 200, response.text
    await _flush_own_redis(redis)

    detail = (await tenant.http.get(f"/api/conversations/{conversation_id}")).json()
    assert detail["ai"] == {"ai_enabled": False, "custom_prompt": "Be brief.", "context": {"agent": "Grace"}}
    # Reading the conversation published the copy again.
    assert json.loads(await redis.get(f"ai_control_{conversation_id}")) == {
        "ai_enabled": False,
        "custom_prompt": "Be brief.",
    }

    await _flush_own_redis(redis)
    await tenant.send_generic(channel, text="are you still there?", sender="+1555710")
    await _completed_runs(db, conversation_id, 2)
    detail = (await tenant.http.get(f"/api/conversations/{conversation_id}")).json()
    assert [m["message_type"] for m in detail["messages"] if m["direction"] == "out"] == ["ai"]
    assert json.loads(await redis.get(f"ai_context_{conversation_id}")) == {"agent": "Grace"}


async def test_after_a_flush_the_keys_come_back_without_a_new_message(tenant: Tenant, db, redis) -> None:
    """Outside consumers read the keys: recovery puts them back even for a conversation that stays quiet."""
    channel = await tenant.generic_channel()
    await tenant.send_generic(channel, text="hello", sender="+1555720")
    conversation_id = await conversation_of(tenant, db, "+1555720")
    await replies(tenant, conversation_id, 1)
    response = await tenant.http.put(
        f"/api/conversations/{conversation_id}/ai", json={"ai_enabled": False, "context": {"queue": "vip"}}
    )
    assert response.status_code == 200, response.text

    await _flush_own_redis(redis)
    control = await wait_until(
        lambda: redis.get(f"ai_control_{conversation_id}"), what="the control key published again"
    )
    assert json.loads(control) == {"ai_enabled": False, "custom_prompt": None}
    assert json.loads(await redis.get(f"ai_context_{conversation_id}")) == {"queue": "vip"}


async def test_state_that_only_redis_had_is_adopted_by_postgres(tenant: Tenant, db, redis) -> None:
    """Before this version, the keys were the only copy: on its first start, PostgreSQL takes them over."""
    channel = await tenant.generic_channel()
    await tenant.send_generic(channel, text="hello", sender="+1555730")
    conversation_id = await conversation_of(tenant, db, "+1555730")
    await replies(tenant, conversation_id, 1)
    await redis.set(f"ai_control_{conversation_id}", json.dumps({"ai_enabled": False, "custom_prompt": "Hi"}))
    await redis.set(f"ai_context_{conversation_id}", json.dumps({"plan": "gold"}))
    await redis.delete("sb:ai:published")  # as on a Redis that an earlier version wrote

    async def adopted() -> bool:
        detail = (await tenant.http.get(f"/api/conversations/{conversation_id}")).json()
        return detail["ai"] == {"ai_enabled": False, "custom_prompt": "Hi", "context": {"plan": "gold"}}

    await wait_until(adopted, what="the Redis-only state adopted by PostgreSQL")
    await tenant.send_generic(channel, text="still there?", sender="+1555730")
    await _completed_runs(db, conversation_id, 2)
    detail = (await tenant.http.get(f"/api/conversations/{conversation_id}")).json()
    assert [m["message_type"] for m in detail["messages"] if m["direction"] == "out"] == ["ai"]
