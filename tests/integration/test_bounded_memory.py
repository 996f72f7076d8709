"""What strangers send does not stay in memory; caches hold a bounded number of entries (issue 14)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from app.services import flows_store
from tests.support.stack import Stack, Tenant

pytestmark = pytest.mark.slow


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


async def test_unknown_channel_ids_are_not_kept(stack: Stack, tenant: Tenant) -> None:
    """issue 14: 300 POSTs with 60 KB ids grew the web process by 63 MB, never freed."""
    assert stack.web.proc is not None
    pid = stack.web.proc.pid
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()

    async def post(kind: str, channel_id: str) -> int:
        answer = await tenant.http.post(f"/webhooks/{kind}/{channel_id}", content=body)
        return answer.status_code

    await asyncio.gather(*(post("whatsapp", str(uuid.uuid4())) for _ in range(20)))  # warm
    before = rss_mb(pid)
    for batch in range(30):
        codes = await asyncio.gather(
            *(post("whatsapp", f"{batch}-{i}-" + "x" * 60_000) for i in range(5)),
            *(post("generic", f"{batch}-{i}-" + "y" * 60_000) for i in range(3)),
            *(post("whatsapp", str(uuid.uuid4())) for _ in range(2)),
        )
        assert set(codes) <= {404, 414}, codes
    grown = rss_mb(pid) - before
    assert grown < 15, f"the web process grew by {grown:.1f} MB"


async def test_the_plan_cache_keeps_a_bounded_number_of_versions(tenant: Tenant, redis) -> None:
    """issue 14: PlanCache kept every published version compiled."""
    revisions = flows_store.Revisions(redis)
    flows_store.use_revisions(revisions)
    plans = flows_store.PlanCache(revisions, max_plans=3)
    document = {
        "schema": "switchboard.flow/v1",
        "name": f"Versions {uuid.uuid4().hex[:6]}",
        "status": "active",
        "nodes": [
            {"id": "t", "type": "when.message_received", "config": {"match": {"kind": "any"}}},
            {"id": "s", "type": "action.send_message", "config": {"text": "v"}},
        ],
        "edges": [{"from": "t", "to": "s"}],
    }
    created = await tenant.create_flow(document)
    for _ in range(7):
        assert (await tenant.http.post(f"/api/flows/{created['id']}/publish")).status_code in (200, 201)
    for version in range(1, 9):
        plan = await plans.plan_for(tenant.workspace_id, created["id"], version)
        assert plan is not None and plan.version == version
    assert len(plans) == 3
    again = await plans.plan_for(tenant.workspace_id, created["id"], 1)  # compiled again
    assert again is not None and again.version == 1
