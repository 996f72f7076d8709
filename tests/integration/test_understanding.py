"""Understanding end to end: the LLM engine against a fake OpenAI server, fallbacks, AI state, quota, confirmations."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from app.services.ai import llm_settings, usage
from app.services.ai.llm import LLMClient, LLMConfig, LLMFailure, VariableRequest
from app.services.ai.personalities import DEFAULTS, CoreIntent
from flows.runtime import IntentCandidate
from flows.schema import TrainingExample
from tests.support.fake_openai import API_KEY, FakeOpenAI, fake_openai
from tests.support.http_peer import HttpPeer, PeerResponse, http_peer  # noqa: F401
from tests.support.stack import ROOT, Tenant, wait_until

pytestmark = pytest.mark.slow

MODEL = "fake-model-1"
ORDER_EXAMPLES = [
    "I want to buy 3 iPhones",
    "I'd like to order two phone cases",
    "Can I purchase a laptop?",
    "أريد شراء آيفون",
    "Quiero comprar 2 iPhones",
]


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as server:
        yield server


async def use_llm(tenant: Tenant, fake: FakeOpenAI, **extra: Any) -> llm_settings.LLMSettingsRead:
    """What a user does on the settings page: point the workspace at the (fake) LLM."""
    return await llm_settings.update(
        tenant.workspace_id,
        llm_settings.LLMSettingsUpdate(model=MODEL, base_url=fake.base_url, api_key=API_KEY, **extra),
    )


def order_flow(url: str, *, requires_confirmation: bool = False, variables: list[dict] | None = None) -> dict:
    return {
        "schema": "switchboard.flow/v1",
        "name": "Orders",
        "status": "active",
        "nodes": [
            {
                "id": "intent",
                "type": "when.message_received",
                "config": {
                    "match": {
                        "kind": "intent",
                        "display_name": "Create order",
                        "description": "The customer wants to buy or order a product.",
                        "training_examples": [{"text": t} for t in ORDER_EXAMPLES],
                        "variables": variables
                        if variables is not None
                        else [
                            {
                                "name": "quantity",
                                "prompt": "How many would you like?",
                                "required": False,
                                "default": 1,
                                "type": "integer",
                            }
                        ],
                    }
                },
            },
            {
                "id": "hook",
                "type": "action.call_webhook",
                "config": {
                    "url": url,
                    "method": "POST",
                    "payload_template": {"quantity": "{{ quantity }}"},
                    "timeout_seconds": 5.0,
                    "max_retries": 0,
                    "success_message": "Order placed.",
                    "requires_confirmation": requires_confirmation,
                    "confirmation_message": "Order {{ quantity }} item(s)? Reply yes or no.",
                },
            },
        ],
        "edges": [{"from": "intent", "to": "hook"}],
    }


def ai_flow(keyword: str, *, action: str, custom_prompt: str = "", context: dict | None = None) -> dict:
    """keyword -> control_ai_response (-> update_ai_context); the message then reaches the AI layer."""
    nodes = [
        {
            "id": "t",
            "type": "when.message_received",
            "config": {"match": {"kind": "keywords", "keywords": [keyword]}},
        },
        {
            "id": "ai",
            "type": "action.control_ai_response",
            "config": {"action": action, **({"custom_prompt": custom_prompt} if custom_prompt else {})},
        },
    ]
    edges = [{"from": "t", "to": "ai"}]
    if context:
        nodes.append({"id": "ctx", "type": "action.update_ai_context", "config": {"context_data": context}})
        edges.append({"from": "ai", "to": "ctx"})
    return {
        "schema": "switchboard.flow/v1",
        "name": f"AI {keyword}",
        "status": "active",
        "nodes": nodes,
        "edges": edges,
    }


async def conversation_of(tenant: Tenant, db, sender: str) -> str:
    return str(
        await wait_until(
            lambda: db.fetchval(
                "SELECT c.id FROM conversations c JOIN contacts p ON p.id = c.contact "
                "WHERE c.workspace = $1 AND p.phone = $2",
                uuid.UUID(tenant.workspace_id),
                sender,
            ),
            what=f"the conversation of {sender}",
        )
    )


async def outbound(tenant: Tenant, conversation_id: str, count: int) -> list[dict]:
    async def enough() -> list[dict] | None:
        detail = (await tenant.http.get(f"/api/conversations/{conversation_id}")).json()
        out = [m for m in detail["messages"] if m["direction"] == "out"]
        return out if len(out) >= count else None

    return await wait_until(enough, what=f"{count} outbound messages")


async def runs_done(db, conversation_id: str, count: int) -> list[Any]:
    async def done() -> list[Any] | None:
        rows = await db.fetch(
            "SELECT trace::text AS trace, result::text AS result, layer FROM runs "
            "WHERE conversation = $1 AND status = 'completed' ORDER BY started_at",
            uuid.UUID(conversation_id),
        )
        return rows if len(rows) >= count else None

    return await wait_until(done, what=f"{count} completed runs")


async def say(
    tenant: Tenant, channel: dict, db, sender: str, text: str, *, replies: int
) -> tuple[str, list[dict]]:
    """Send one message and wait until the conversation has `replies` outbound messages in all."""
    assert (await tenant.send_generic(channel, text=text, sender=sender)).status_code == 200
    conversation = await conversation_of(tenant, db, sender)
    return conversation, await outbound(tenant, conversation, replies)


def trace_step(run: Any, kind: str) -> dict:
    return next(e for e in json.loads(run["trace"]) if e["type"] == kind)


def candidate() -> IntentCandidate:
    return IntentCandidate(
        flow_id="f1",
        node_id="intent",
        display_name="Create order",
        description="The customer wants to buy something.",
        training_examples=[TrainingExample(text=t) for t in ORDER_EXAMPLES],
    )


# --- the LLM engine over real HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize("json_mode", [False, True], ids=["tool_call", "json_content"])
async def test_llm_detection_structured_answer(fake: FakeOpenAI, json_mode: bool) -> None:
    fake.json_mode = json_mode
    fake.detect = {"action": "Create order", "confidence": 0.93, "reasons": "wants to buy phones"}
    client = LLMClient(timeout_s=5)
    config = LLMConfig(api_key=API_KEY, base_url=fake.base_url, model=MODEL)
    detection, used = await client.detect(config, "quiero tres iPhones", [candidate()])
    assert detection.engine == "llm" and detection.reason == "wants to buy phones"
    assert (detection.match.flow_id, detection.match.node_id, detection.match.confidence) == (
        "f1",
        "intent",
        0.93,
    )
    assert (used.prompt_tokens, used.completion_tokens) == fake.usage
    [call] = fake.calls
    assert call.body["model"] == MODEL and call.authorization == f"Bearer {API_KEY}"
    assert call.body["tool_choice"]["function"]["name"] == "choose_action"
    [action] = call.detect_payload()["actions"]
    assert action["name"] == "Create order" and "Quiero comprar 2 iPhones" in action["examples"]
    assert call.detect_payload()["message"] == "quiero tres iPhones"

    fake.detect = {"action": None, "confidence": 0.9, "reasons": "a greeting"}
    none, _ = await client.detect(config, "hello", [candidate()])
    assert none.match is None and none.engine == "llm"
    await client.aclose()


async def test_llm_retries_429_and_5xx_then_answers(fake: FakeOpenAI) -> None:
    fake.errors = [429, 503]
    fake.detect = {"action": "Create order", "confidence": 0.97}
    client = LLMClient(timeout_s=5, max_retries=2)
    detection, _ = await client.detect(
        LLMConfig(api_key=API_KEY, base_url=fake.base_url, model=MODEL), "buy 3 iPhones", [candidate()]
    )
    assert detection.match is not None and detection.match.confidence == 0.97
    assert [c.status for c in fake.calls] == [429, 503, 200]
    await client.aclose()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"errors": [500] * 10}, "HTTP 500 after retries"),
        ({"malformed": True}, "bad answer: not JSON"),
        ({"delay_s": 3.0}, "timeout after 0.5 s"),
    ],
    ids=["server_error", "bad_json", "slow"],
)
async def test_llm_failures_have_short_reasons(fake: FakeOpenAI, setup: dict, reason: str) -> None:
    for name, value in setup.items():
        setattr(fake, name, value)
    client = LLMClient(timeout_s=0.5, max_retries=2)
    with pytest.raises(LLMFailure) as failure:
        await client.detect(
            LLMConfig(api_key=API_KEY, base_url=fake.base_url, model=MODEL), "buy", [candidate()]
        )
    assert failure.value.reason.startswith(reason)
    if "errors" in setup:
        assert len(fake.calls) == 3  # the first try and max_retries=2
    await client.aclose()


async def test_llm_extraction_returns_typed_values(fake: FakeOpenAI) -> None:
    fake.extract = {
        "quantity": "3",
        "budget": {"amount": "20.5", "currency": "usd"},
        "email": None,
        "product": "iPhone 15",
    }
    client = LLMClient(timeout_s=5)
    values, _ = await client.extract(
        LLMConfig(api_key=API_KEY, base_url=fake.base_url, model=MODEL),
        "three iPhone 15 for $20.5",
        [
            VariableRequest(name="quantity", prompt="How many?", type="number"),
            VariableRequest(name="budget", type="money"),
            VariableRequest(name="email", type="email"),
            VariableRequest(name="product", prompt="Which product?", type="product"),
        ],
    )
    assert values == {"quantity": 3, "budget": {"amount": 20.5, "currency": "USD"}, "product": "iPhone 15"}
    properties = fake.calls[0].tool_parameters()["properties"]
    assert (
        properties["quantity"]["type"] == ["number", "null"]
        and "How many?" in properties["quantity"]["description"]
    )
    await client.aclose()


# --- the LLM in the service: tester, worker, fallbacks ------------------------------------------------


async def test_settings_and_tester_detection_via_llm(
    tenant: Tenant, fake: FakeOpenAI, http_peer: HttpPeer
) -> None:
    before = await llm_settings.get(tenant.workspace_id)
    assert before.key_set is False  # the suite runs with OPENAI_API_KEY empty
    read = await use_llm(tenant, fake)
    assert (read.model, read.base_url, read.key_set) == (MODEL, fake.base_url, True)
    stored = await tenant_key_column(tenant)
    assert stored and API_KEY not in stored  # encrypted at rest

    await tenant.create_flow(order_flow(http_peer.url("/orders")))
    fake.detect = {"action": "Create order", "confidence": 0.96, "reasons": "a purchase"}
    fake.extract = {"quantity": 3}
    result = (await tenant.http.post("/api/tester/run", json={"message": "I'd love three iPhones"})).json()
    assert result["engine"] == "llm"
    assert result["match"]["display_name"] == "Create order" and result["match"]["confidence"] == 0.96
    assert result["vars"] == {"quantity": 3}
    assert result["webhook"]["payload"] == {"quantity": 3} and http_peer.requests == []  # dry run
    assert [c.kind for c in fake.calls] == ["choose_action", "extract_variables"]

    # A dry run's AI answer never calls the LLM.
    fake.detect = {"action": None, "confidence": 0.95, "reasons": "a greeting"}
    answered = (await tenant.http.post("/api/tester/run", json={"message": "good morning!"})).json()
    assert answered["layer"] == "core_intent"
    assert answered["answer"]["engine"] == "fallback (offline: dry run)"
    assert fake.calls_of("reply") == []


async def tenant_key_column(tenant: Tenant) -> str:
    from app.db.tables import Workspace

    row = await Workspace.select(Workspace.llm_api_key_enc).where(Workspace.id == tenant.workspace_id).first()
    return row["llm_api_key_enc"]


async def test_llm_down_local_engine_decides_and_the_trace_says_so(
    tenant: Tenant, fake: FakeOpenAI, http_peer: HttpPeer, db
) -> None:
    await use_llm(tenant, fake)
    fake.errors = [500] * 1000
    http_peer.reply("POST", "/orders", PeerResponse.json({"ok": True}))
    await tenant.create_flow(order_flow(http_peer.url("/orders")))
    channel = await tenant.generic_channel()

    conversation, sent = await say(tenant, channel, db, "+1555801", "I want to buy 3 iPhones", replies=1)
    assert [m["text"] for m in sent] == ["Order placed."]
    assert [r.json() for r in http_peer.requests] == [{"quantity": 3}]
    [run] = await runs_done(db, conversation, 1)
    detect = trace_step(run, "intent.detect")["output"]
    assert (
        detect["engine"] == "local (llm failed: HTTP 500 after retries)" and detect["match"] == "Create order"
    )
    assert json.loads(run["result"])["detection"]["engine"].startswith("local (llm failed")

    # No action matches: the personality's fallback text answers, and says why.
    _, sent = await say(tenant, channel, db, "+1555801", "what are your opening hours?", replies=2)
    assert sent[-1]["message_type"] == "ai"
    run = (await runs_done(db, conversation, 2))[-1]
    answer = json.loads(run["result"])["answer"]
    assert answer["engine"] == "fallback (llm failed: HTTP 500 after retries)"
    assert sent[-1]["text"] == DEFAULTS[CoreIntent(answer["intent"])].fallback_text


async def test_ai_reply_honours_custom_prompt_context_and_disable(
    tenant: Tenant, fake: FakeOpenAI, db
) -> None:
    await use_llm(tenant, fake)
    fake.reply = lambda call: f"LLM reply #{len(fake.calls_of('reply'))}"
    await tenant.create_flow(
        ai_flow(
            "premium",
            action="custom_prompt",
            custom_prompt="You are a premium assistant for {{ contact.first_name }}.",
            context={"support_tier": "premium"},
        )
    )
    await tenant.create_flow(ai_flow("human", action="disable"))
    channel = await tenant.generic_channel()

    _, sent = await say(tenant, channel, db, "+1555802", "premium: my router keeps rebooting", replies=1)
    assert sent[0]["text"] == "LLM reply #1" and sent[0]["message_type"] == "ai"
    [call] = fake.calls_of("reply")
    assert "You are a premium assistant for Ada." in call.system
    assert '"support_tier": "premium"' in call.system
    assert any(p.system_prompt in call.system for p in DEFAULTS.values())  # extended, not replaced
    assert call.messages[-1] == {"role": "user", "content": "premium: my router keeps rebooting"}

    conversation, _ = await say(tenant, channel, db, "+1555802", "I want a human", replies=1)
    await runs_done(db, conversation, 2)
    await say(tenant, channel, db, "+1555802", "hello?", replies=1)
    runs = await runs_done(db, conversation, 3)
    assert json.loads(runs[-1]["result"])["answer"] is None  # the AI layer did not run
    assert len(fake.calls_of("reply")) == 1
    assert len(await outbound(tenant, conversation, 1)) == 1


async def test_history_window_and_reset_context(tenant: Tenant, fake: FakeOpenAI, db) -> None:
    await use_llm(tenant, fake)
    fake.reply = lambda call: f"answer {len(fake.calls_of('reply'))}"
    await tenant.create_flow(ai_flow("restart", action="reset_context"))
    channel = await tenant.generic_channel()
    for n in range(1, 7):
        await say(tenant, channel, db, "+1555803", f"question {n}", replies=n)
    last = fake.calls_of("reply")[-1]
    window = [m for m in last.messages if m["role"] != "system"]
    # SWITCHBOARD_AI_HISTORY_TURNS=10 messages: the first question fell out of the window.
    assert len(window) == 10
    assert window[0] == {"role": "assistant", "content": "answer 1"}
    assert window[1] == {"role": "user", "content": "question 2"}
    assert window[-1] == {"role": "user", "content": "question 6"}

    await say(tenant, channel, db, "+1555803", "restart please", replies=7)
    after_reset = [m for m in fake.calls_of("reply")[-1].messages if m["role"] != "system"]
    assert after_reset == [{"role": "user", "content": "restart please"}]


async def test_quota_stops_the_llm_and_usage_is_counted(tenant: Tenant, fake: FakeOpenAI, db) -> None:
    fake.usage = (20, 10)
    fake.reply = "from the LLM"
    await use_llm(tenant, fake, monthly_token_quota=25)
    channel = await tenant.generic_channel()

    _, sent = await say(tenant, channel, db, "+1555804", "hi there", replies=1)
    assert sent[0]["text"] == "from the LLM"
    conversation, sent = await say(tenant, channel, db, "+1555804", "are you still there?", replies=2)
    assert sent[1]["text"] != "from the LLM" and sent[1]["message_type"] == "ai"
    run = (await runs_done(db, conversation, 2))[-1]
    assert json.loads(run["result"])["answer"]["engine"] == "fallback (llm quota reached)"
    assert len(fake.calls_of("reply")) == 1

    counted = await wait_until(
        lambda: _usage_with(tenant, local_calls=1), what="the local call to be counted"
    )
    assert (counted.llm_calls, counted.prompt_tokens, counted.completion_tokens) == (1, 20, 10)
    assert counted.month == usage.current_month() and counted.monthly_token_quota == 25
    log = ROOT / "artifacts" / "logs" / "worker.log"
    lines = [
        line
        for line in log.read_text().splitlines()
        if "LLM token quota reached" in line and tenant.workspace_id in line
    ]
    assert len(lines) == 1


async def _usage_with(tenant: Tenant, *, local_calls: int) -> usage.UsageRead | None:
    read = await usage.read(tenant.workspace_id)
    return read if read.local_calls >= local_calls else None


async def test_local_engine_calls_are_counted_without_an_llm(tenant: Tenant, http_peer: HttpPeer, db) -> None:
    http_peer.reply("POST", "/orders", PeerResponse.json({"ok": True}))
    await tenant.create_flow(order_flow(http_peer.url("/orders")))
    channel = await tenant.generic_channel()
    await say(tenant, channel, db, "+1555805", "I want to buy 3 iPhones", replies=1)
    # Detection and extraction, both by the local engine.
    counted = await wait_until(lambda: _usage_with(tenant, local_calls=2), what="two local calls")
    assert counted.llm_calls == 0 and counted.prompt_tokens == 0


# --- confirmations and missing variables with the offline engine, through the real worker ---------------


async def pending_status(db, conversation_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT status FROM action_executions WHERE conversation = $1 AND kind <> 'webhook' "
        "ORDER BY created_at",
        uuid.UUID(conversation_id),
    )
    return [r["status"] for r in rows]


async def _pending_is(db, conversation_id: str, expected: list[str]) -> bool:
    return await pending_status(db, conversation_id) == expected


async def confirm_setup(tenant: Tenant, http_peer: HttpPeer, db, sender: str) -> tuple[dict, str]:
    http_peer.reply("POST", "/orders", PeerResponse.json({"ok": True}))
    await tenant.create_flow(order_flow(http_peer.url("/orders"), requires_confirmation=True))
    channel = await tenant.generic_channel()
    conversation, sent = await say(tenant, channel, db, sender, "I want to buy 3 iPhones", replies=1)
    assert sent[0]["text"] == "Order 3 item(s)? Reply yes or no."
    assert await pending_status(db, conversation) == ["awaiting_confirmation"]
    return channel, conversation


@pytest.mark.parametrize("reply", ["yes", "sí, claro", "نعم"])
async def test_confirmation_approved_runs_the_action_once(
    tenant: Tenant, http_peer: HttpPeer, db, reply: str
) -> None:
    channel, conversation = await confirm_setup(tenant, http_peer, db, "+1555811")
    _, sent = await say(tenant, channel, db, "+1555811", reply, replies=2)
    assert sent[1]["text"] == "Order placed."
    assert [r.json() for r in http_peer.requests_to("/orders")] == [{"quantity": 3}]
    # The pending action is settled after the chain ran, so after its reply went out.
    await wait_until(
        lambda: _pending_is(db, conversation, ["completed"]), what="the pending action completed"
    )


async def test_confirmation_rejected_runs_nothing(tenant: Tenant, http_peer: HttpPeer, db) -> None:
    channel, conversation = await confirm_setup(tenant, http_peer, db, "+1555812")
    await tenant.send_generic(channel, text="no thanks", sender="+1555812")
    await runs_done(db, conversation, 2)
    await wait_until(lambda: _pending_is(db, conversation, ["rejected"]), what="the pending action rejected")
    assert http_peer.requests_to("/orders") == []


async def test_unclear_reply_asks_once_more_then_expires(tenant: Tenant, http_peer: HttpPeer, db) -> None:
    channel, conversation = await confirm_setup(tenant, http_peer, db, "+1555813")
    _, sent = await say(tenant, channel, db, "+1555813", "hmm, what colour is it?", replies=2)
    assert sent[1]["text"] == "Order 3 item(s)? Reply yes or no."
    assert await pending_status(db, conversation) == ["awaiting_confirmation"]
    # Still unclear: it expires, and the message is answered as a new one (the AI fallback).
    _, sent = await say(tenant, channel, db, "+1555813", "tell me about the warranty", replies=3)
    assert sent[2]["message_type"] == "ai"
    await wait_until(lambda: _pending_is(db, conversation, ["expired"]), what="the pending action expired")
    assert http_peer.requests_to("/orders") == []


async def test_concurrent_and_duplicate_replies_run_the_action_once(
    tenant: Tenant, http_peer: HttpPeer, db
) -> None:
    channel, conversation = await confirm_setup(tenant, http_peer, db, "+1555814")
    message_id = uuid.uuid4().hex
    sends = [
        tenant.send_generic(channel, text="yes", sender="+1555814", message_id=message_id),
        tenant.send_generic(channel, text="yes", sender="+1555814", message_id=message_id),
        tenant.send_generic(channel, text="yes please", sender="+1555814"),
        tenant.send_generic(channel, text="ok go ahead", sender="+1555814"),
    ]
    assert all(r.status_code == 200 for r in await asyncio.gather(*sends))
    await wait_until(
        lambda: db.fetchval(
            "SELECT count(*) = 0 FROM messages WHERE conversation = $1 AND direction = 'in' AND processed_at IS NULL",
            uuid.UUID(conversation),
        ),
        what="every reply to be processed",
    )

    async def completed() -> bool:
        return await pending_status(db, conversation) == ["completed"]

    await wait_until(completed, what="the action to complete")
    assert len(http_peer.requests_to("/orders")) == 1
    # A reply after completion is a new message: no second run.
    await tenant.send_generic(channel, text="yes", sender="+1555814")
    await wait_until(
        lambda: db.fetchval(
            "SELECT count(*) = 0 FROM messages WHERE conversation = $1 AND direction = 'in' AND processed_at IS NULL",
            uuid.UUID(conversation),
        ),
        what="the late reply to be processed",
    )
    assert len(http_peer.requests_to("/orders")) == 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM action_executions WHERE conversation = $1 AND kind = 'webhook'",
            uuid.UUID(conversation),
        )
        == 1
    )


async def test_missing_required_variable_is_asked_then_filled(
    tenant: Tenant, http_peer: HttpPeer, db
) -> None:
    http_peer.reply("POST", "/orders", PeerResponse.json({"ok": True}))
    await tenant.create_flow(
        order_flow(
            http_peer.url("/orders"),
            variables=[
                {
                    "name": "quantity",
                    "prompt": "How many would you like, {{ contact.first_name }}?",
                    "required": True,
                    "type": "integer",
                }
            ],
        )
    )
    channel = await tenant.generic_channel()
    conversation, sent = await say(tenant, channel, db, "+1555815", "I want to buy some iPhones", replies=1)
    assert sent[0]["text"] == "How many would you like, Ada?"
    assert await pending_status(db, conversation) == ["pending"]
    assert http_peer.requests_to("/orders") == []

    _, sent = await say(tenant, channel, db, "+1555815", "four please", replies=2)
    assert sent[1]["text"] == "Order placed."
    assert [r.json() for r in http_peer.requests_to("/orders")] == [{"quantity": 4}]
    await wait_until(
        lambda: _pending_is(db, conversation, ["completed"]), what="the pending action completed"
    )


# --- eval-intents --engine llm ----------------------------------------------------------------------------


async def test_eval_intents_with_the_llm_engine(fake: FakeOpenAI, tmp_path) -> None:
    rows = {
        "train": [
            ("I want to buy a phone", "buy"),
            ("order two cases", "buy"),
            ("refund my order", "refund"),
            ("I want my money back", "refund"),
        ],
        "test": [("buy a laptop", "buy"), ("please refund me", "refund"), ("what's the weather", "oos")],
    }
    for name, items in rows.items():
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in items)
        )

    def route(call) -> dict:
        message = call.detect_payload()["message"]
        names = {a["name"] for a in call.detect_payload()["actions"]}
        assert names == {"buy", "refund"}
        action = "refund" if "refund" in message else "buy" if "buy" in message else None
        return {"action": action, "confidence": 0.9}

    fake.detect = route
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "eval-intents",
        "--train",
        str(tmp_path / "train.jsonl"),
        "--test",
        str(tmp_path / "test.jsonl"),
        "--engine",
        "llm",
        "--shots",
        "2",
        cwd=ROOT,
        env={
            **os.environ,
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": fake.base_url,
            "SWITCHBOARD_LLM_MODEL": MODEL,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["engine"] == "llm" and report["accuracy"] == 1.0
    assert report["oos_precision"] == 1.0 and report["oos_recall"] == 1.0
    assert report["in_scope_accuracy"] == 1.0 and report["auroc"] == 1.0
    assert report["llm"] == {"model": MODEL, "failed_calls": 0, "prompt_tokens": 60, "completion_tokens": 30}
    assert len(fake.calls_of("choose_action")) == 3


# --- scored candidates: thresholds and the ambiguity margin apply to both engines -------------------------


def track_flow(url: str) -> dict:
    doc = order_flow(url)
    doc["name"] = "Tracking"
    match = doc["nodes"][0]["config"]["match"]
    match.update(
        display_name="Track order",
        description="The customer asks where an order is.",
        training_examples=[
            {"text": t} for t in ["where is my order?", "track my package", "¿dónde está mi pedido?"]
        ],
        variables=[],
    )
    return doc


async def test_llm_scored_candidates_meet_thresholds_and_the_ambiguity_margin(
    tenant: Tenant, fake: FakeOpenAI, http_peer: HttpPeer
) -> None:
    await use_llm(tenant, fake)
    await tenant.create_flow(order_flow(http_peer.url("/orders")))
    await tenant.create_flow(track_flow(http_peer.url("/track")))
    fake.detect = {
        "action": "Create order",
        "confidence": 0.93,
        "scores": {"Create order": 0.93, "Track order": 0.91},
    }
    close = (await tenant.http.post("/api/tester/run", json={"message": "my order of 2 phones"})).json()
    assert close["engine"] == "llm"
    assert [(s["display_name"], s["confidence"], s["threshold"], s["passes"]) for s in close["scores"]] == [
        ("Create order", 0.93, 0.8, True),
        ("Track order", 0.91, 0.8, True),
    ]
    assert close["layer"] != "external_action" and close["webhook"] is None
    assert any("ambiguous" in w for w in close["warnings"])

    fake.detect = {"action": "Create order", "confidence": 0.93, "scores": {"Track order": 0.2}}
    clear = (await tenant.http.post("/api/tester/run", json={"message": "two phones please"})).json()
    assert clear["layer"] == "external_action" and clear["match"]["display_name"] == "Create order"
    assert [(s["display_name"], s["passes"]) for s in clear["scores"]] == [
        ("Create order", True),
        ("Track order", False),
    ]

    fake.detect = {"action": None, "confidence": 0.9, "scores": {"Track order": 0.4}}
    none = (await tenant.http.post("/api/tester/run", json={"message": "nice weather"})).json()
    assert none["match"] is None and [s["confidence"] for s in none["scores"]] == [0.4]


async def test_local_tester_shows_every_action_against_its_threshold(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    await tenant.create_flow(order_flow(http_peer.url("/orders")))
    await tenant.create_flow(track_flow(http_peer.url("/track")))
    result = (await tenant.http.post("/api/tester/run", json={"message": "where is my package?"})).json()
    assert result["engine"] == "local"
    by_name = {s["display_name"]: s for s in result["scores"]}
    assert set(by_name) == {"Create order", "Track order"}
    track = by_name["Track order"]
    assert track["passes"] and track["confidence"] >= track["threshold"] == 0.8
    assert 0 < track["learned_cut"] < 1 and track["probability"] >= track["learned_cut"]
    assert not by_name["Create order"]["passes"]
    assert result["match"]["display_name"] == "Track order"
    assert 0 <= result["none_probability"] < 1
