"""What a provider sees when the workers are behind: the backpressure policy (issue 15).

The policy: ingress never waits on the workers and never sheds. A webhook is answered 200
once its messages are committed to PostgreSQL, however long the backlog; the backlog is
those stored rows (and one due entry per conversation in Redis), not a queue in a process's
memory, so the web and the worker keep their size. Workers pull due conversations at their
own pace (the scheduler pops nothing while flush jobs wait), and a conversation that waits
gathers its next messages into the same turn. A provider sees a 5xx only when the message
could not be stored (PostgreSQL down: `IngressError`), and then redelivers; a redelivery of
a stored message is answered 200 as a duplicate and not processed twice.
"""

from __future__ import annotations

import asyncio

from app.pipeline.buffer import DUE_KEY
from tests.integration.test_webhook_actions import hook_flow
from tests.support.http_peer import HttpPeer, PeerResponse
from tests.support.stack import Stack, Tenant, redis_client, wait_until


async def test_with_the_worker_stopped_every_message_is_acknowledged_stored_and_processed_later(
    stack: Stack, tenant: Tenant, http_peer: HttpPeer, db
) -> None:
    http_peer.reply("POST", "/orders", PeerResponse.json({"ref": "ok"}))
    flow = await tenant.create_flow(
        hook_flow(http_peer.url("/orders"), success_message="", failure_message="")
    )
    channel = await tenant.generic_channel()
    senders = [f"+1555900{i:04d}" for i in range(40)]
    redis = redis_client(stack.redis_url)
    stack.worker.stop()
    try:
        responses = await asyncio.gather(
            *(
                tenant.send_generic(channel, text=f"order {i}", sender=s, message_id=f"bp-{i}")
                for i, s in enumerate(senders)
            )
        )
        # Behind (no worker at all), every message is still acknowledged as stored.
        assert [r.status_code for r in responses] == [200] * len(senders)
        assert all(r.json()["received"] == 1 for r in responses)
        conversations = {r.json()["conversation_id"] for r in responses}
        stored = await db.fetchval(
            "SELECT count(*) FROM messages WHERE conversation = ANY($1::uuid[]) AND direction = 'in' "
            "AND processed_at IS NULL",
            list(conversations),
        )
        assert stored == len(senders)
        due = await redis.zmscore(DUE_KEY, list(conversations))
        assert all(score is not None for score in due)  # each waits as one entry, signalled once
        assert http_peer.requests_to("/orders") == []
        # A provider's redelivery while behind: 200 as a duplicate, nothing stored twice.
        again = await tenant.send_generic(channel, text="order 0", sender=senders[0], message_id="bp-0")
        assert again.status_code == 200 and again.json()["duplicate"] is True
    finally:
        stack.worker.start()
        await redis.aclose()

    async def backlog() -> int:
        return await db.fetchval(
            "SELECT count(*) FROM messages WHERE conversation = ANY($1::uuid[]) AND direction = 'in' "
            "AND processed_at IS NULL",
            list(conversations),
        )

    await wait_until(
        lambda: _zero(backlog()), timeout_s=60, what="the backlog processed once the worker is back"
    )
    calls = http_peer.requests_to("/orders")
    assert sorted(c.json()["phone"] for c in calls) == sorted(senders)  # each once
    executions = await db.fetchval(
        "SELECT count(*) FROM action_executions WHERE flow_id = $1::uuid", flow["id"]
    )
    assert executions == len(senders)


async def _zero(count) -> bool:
    return await count == 0
