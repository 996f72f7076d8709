"""The tester's real calls (execute=true) count like any execution (issue 14).

They called real webhooks outside the per-workspace rate limit and the action log.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.test_editor_refusals import logged_in
from tests.integration.test_webhook_actions import hook_flow
from tests.support.http_peer import HttpPeer, PeerResponse
from tests.support.stack import Tenant

pytestmark = pytest.mark.slow

RATE_LIMIT = 600  # SWITCHBOARD_WEBHOOK_RATE_LIMIT_PER_MINUTE, the suite's (default) value


async def test_a_real_tester_call_is_in_the_action_log_marked_as_a_test(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    http_peer.reply("POST", "/hook", PeerResponse.json({"ref": "T-1"}))
    flow = await tenant.create_flow(hook_flow(http_peer.url("/hook")))
    answer = await tenant.http.post("/api/tester/run", json={"message": "order please", "execute": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["executed"] is True and len(http_peer.requests_to("/hook")) == 1
    logs = (await tenant.http.get(f"/api/actions/{flow['id']}/hook/logs")).json()
    [entry] = logs["items"]
    assert entry["test"] is True and entry["status"] == "success" and entry["status_code"] == 200
    assert entry["original_message"] == "order please"
    assert logs["stats"]["executions"] == 0  # a test is no customer's execution
    client, _ = await logged_in(tenant)
    try:
        page = await client.get("/logs", params={"action": f"{flow['id']}/hook"})
    finally:
        await client.aclose()
    assert page.status_code == 200 and 'class="badge test-call"' in page.text


async def test_real_tester_calls_count_against_the_workspace_rate_limit(
    tenant: Tenant, http_peer: HttpPeer, redis
) -> None:
    http_peer.reply("POST", "/hook", PeerResponse.json({"ref": "T-1"}))
    await tenant.create_flow(hook_flow(http_peer.url("/hook")))
    window = int(time.time() // 60)
    for w in (window, window + 1):  # this minute's executions are used up (by customers' messages)
        await redis.set(f"sb:rl:webhooks:{tenant.workspace_id}:{w}", RATE_LIMIT, ex=180)
    answer = await tenant.http.post("/api/tester/run", json={"message": "order please", "execute": True})
    assert answer.status_code == 200, answer.text
    assert http_peer.requests_to("/hook") == []
    webhook = answer.json()["webhook"]
    assert "webhook rate limit reached" in webhook["error"]
