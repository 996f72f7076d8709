"""One tenant's hostile flow does not slow another workspace's replies (issue 14).

Each test measures a victim workspace's reply latency (webhook POST -> the reply reaching the
Graph API) before and while an attacker's turn runs in the same worker, and compares the two
medians: a ratio, never a fixed time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import pytest

from tests.integration.test_message_path import post_signed, sent_to, whatsapp_channel
from tests.support.http_peer import HttpPeer
from tests.support.stack import Tenant, create_tenant, wait_until
from tests.support.whatsapp import text_envelope

pytestmark = pytest.mark.slow

SAMPLES = 7
# The victim's latency is mostly the 0.4 s buffer wait; a stalled worker adds seconds to it.
MAX_RATIO = 1.8


def flow(name: str, trigger: dict, *actions: dict) -> dict:
    nodes = [{"id": "t", "type": "when.message_received", "config": {"match": trigger}}]
    edges = []
    for i, action in enumerate(actions):
        nodes.append({"id": f"a{i}", **action})
        edges.append({"from": "t", "to": f"a{i}"})  # branches: a failing node does not stop the others
    return {"schema": "switchboard.flow/v1", "name": name, "status": "active", "nodes": nodes, "edges": edges}


def send(text: str) -> dict:
    return {"type": "action.send_message", "config": {"text": text, "message_type": "support"}}


ECHO = flow(
    "Echo",
    {"kind": "any"},
    send("pong"),
    {"type": "action.control_ai_response", "config": {"action": "disable"}},
)


async def setup(tenant: Tenant, graph_api: HttpPeer, document: dict) -> dict:
    channel = await whatsapp_channel(tenant, graph_api)
    created = await tenant.create_flow(document)
    published = await tenant.http.post(f"/api/flows/{created['id']}/publish")
    assert published.status_code in (200, 201), published.text
    return channel


async def reply_latency(tenant: Tenant, channel: dict, graph_api: HttpPeer) -> float:
    sender = "1555" + str(uuid.uuid4().int)[:8]
    started = time.time()
    answer = await post_signed(
        tenant,
        channel["id"],
        text_envelope(phone_number_id=channel["phone_number_id"], sender=sender, text="ping"),
    )
    assert answer.status_code == 200, answer.text

    def reply():
        return [r for r in sent_to(graph_api, channel["phone_number_id"]) if r.json()["to"] == sender]

    (request,) = await wait_until(reply, timeout_s=30, what="the victim's reply")
    return request.received_at - started


async def median_latency(tenant: Tenant, channel: dict, graph_api: HttpPeer) -> float:
    samples = await asyncio.gather(*(reply_latency(tenant, channel, graph_api) for _ in range(SAMPLES)))
    return statistics.median(samples)


async def attack(tenant: Tenant, channel: dict, text: str, *, senders: int = 1) -> None:
    for _ in range(senders):
        sender = "1666" + str(uuid.uuid4().int)[:8]
        answer = await post_signed(
            tenant,
            channel["id"],
            text_envelope(phone_number_id=channel["phone_number_id"], sender=sender, text=text),
        )
        assert answer.status_code == 200, answer.text


async def finished_runs(tenant: Tenant) -> int:
    answer = await tenant.http.get("/api/runs", params={"limit": 100})
    return sum(run["status"] != "running" for run in answer.json())


async def latency_before_and_during(
    stack, graph_api: HttpPeer, hostile: dict, text: str
) -> tuple[float, float]:
    victim, attacker = await create_tenant(stack), await create_tenant(stack)
    try:
        victim_channel = await setup(victim, graph_api, ECHO)
        attacker_channel = await setup(attacker, graph_api, hostile)
        # Warm: plans compiled, connections open, the offline AI engine loaded by a harmless turn.
        await attack(attacker, attacker_channel, "hello there")
        await wait_until(lambda: finished_runs(attacker), timeout_s=60, what="the attacker's warm-up turn")
        await median_latency(victim, victim_channel, graph_api)
        before = await median_latency(victim, victim_channel, graph_api)
        # The attacker's message and the victim's become due together, so their turns share the worker.
        await attack(attacker, attacker_channel, text)
        during = await median_latency(victim, victim_channel, graph_api)
        return before, during
    finally:
        await victim.aclose()
        await attacker.aclose()


async def test_a_backtracking_regex_does_not_stall_another_workspace(stack, graph_api: HttpPeer) -> None:
    """issue 14: one 26-character message against ^(a|a)*$ took a worker for seconds (1.4 s -> 14.6 s)."""
    hostile = flow("ReDoS", {"kind": "regex", "pattern": "^(a|a)*$"}, send("matched"))
    before, during = await latency_before_and_during(stack, graph_api, hostile, "a" * 27 + "b")
    assert during < before * MAX_RATIO, f"victim reply {before:.2f} s before, {during:.2f} s during"


SLOW_TEMPLATE = "{% for i in 'x' * 9000 %}{{ ('yx' * 2000) | list | sort | first }}{% endfor %}"
NESTED_LOOPS = "{% for a in 'x' * 7000 %}{% for b in 'y' * 7000 %}{% endfor %}{% endfor %}"


async def test_a_turn_of_expensive_templates_does_not_stall_another_workspace(
    stack, graph_api: HttpPeer
) -> None:
    """issue 14: nested loops (48 M iterations) took a victim's reply from 1.4 s to 4.5 s.

    The hostile flow's forty branches each render until their time budget is spent; together
    they would run for minutes without the turn's budget.
    """
    hostile = flow("Loops", {"kind": "any"}, send(NESTED_LOOPS), *[send(SLOW_TEMPLATE) for _ in range(40)])
    before, during = await latency_before_and_during(stack, graph_api, hostile, "hello")
    assert during < before * MAX_RATIO, f"victim reply {before:.2f} s before, {during:.2f} s during"


async def tester_latency(tenant: Tenant) -> float:
    started = time.perf_counter()
    answer = await tenant.http.post("/api/tester/run", json={"message": "ping"})
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - started


async def test_the_tester_does_not_stall_the_web_process(stack, graph_api: HttpPeer) -> None:
    """issue 14: a tester call with a backtracking regex stalled the web process (/health 8.9 s).

    Another workspace's tester calls (web process, like /health) are measured before and while
    the attacker's tester calls run back to back.
    """
    victim, attacker = await create_tenant(stack), await create_tenant(stack)
    hostile = flow(
        "Tester",
        {"kind": "regex", "pattern": "^(a|a)*$"},
        send(NESTED_LOOPS),
        *[send(SLOW_TEMPLATE) for _ in range(40)],
    )
    try:
        # A victim flow with work of its own (a loop per node), so its baseline is tens of milliseconds.
        busy = [send("{% for c in message_text * 100 %}{{ c }}{% endfor %} " + str(i)) for i in range(40)]
        await victim.create_flow(flow("Busy", {"kind": "any"}, *busy))
        await attacker.create_flow(hostile)
        for tenant in (victim, attacker):  # warm: the offline AI engine loads on a process's first call
            await tester_latency(tenant)
        before = statistics.median([await tester_latency(victim) for _ in range(9)])
        stop = asyncio.Event()
        attacks = 0

        async def attack_loop() -> None:
            nonlocal attacks
            while not stop.is_set():
                answer = await attacker.http.post("/api/tester/run", json={"message": "a" * 27 + "b"})
                assert answer.status_code == 200, answer.text
                attacks += 1

        attacking = asyncio.create_task(attack_loop())
        during = statistics.median([await tester_latency(victim) for _ in range(9)])
        stop.set()
        await attacking
    finally:
        await victim.aclose()
        await attacker.aclose()
    assert attacks >= 1
    assert during < before * 2, (
        f"victim's tester call {before * 1000:.0f} ms before, {during * 1000:.0f} ms during"
    )
