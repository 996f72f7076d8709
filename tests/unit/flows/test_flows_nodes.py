"""Every node type, run through the interpreter with the in-memory runtime."""

from __future__ import annotations

import pytest
from memory_runtime import MemoryRuntime, chain, make_plan, make_turn

from flows.interpreter import run_turn
from flows.nodes.condition import evaluate
from flows.nodes.registry import NODE_TYPES
from flows.runtime import WebhookOutcome, WebhookStatus
from flows.turn import AIState, EventKind, TurnEvent

ANY = {"type": "when.message_received", "config": {"match": {"kind": "any"}}}


def trace_of(result, node_id: str):
    return next(t for t in result.trace if t.node_id == node_id and t.flow_id)


def send(text: str, message_type: str = "support") -> dict:
    return {"type": "action.send_message", "config": {"text": text, "message_type": message_type}}


def ai(action: str, prompt: str = "") -> dict:
    return {"type": "action.control_ai_response", "config": {"action": action, "custom_prompt": prompt}}


def test_registry_lists_every_design_node_type():
    assert set(NODE_TYPES) == {
        "when.message_received",
        "when.conversation_created",
        "when.contact_created",
        "when.tag_added",
        "when.tag_removed",
        "action.send_message",
        "action.control_ai_response",
        "action.update_ai_context",
        "action.call_webhook",
        "action.set_conversation_status",
        "action.add_tag",
        "action.remove_tag",
        "logic.condition",
    }
    assert NODE_TYPES["logic.condition"].out_ports == ("true", "false")
    assert NODE_TYPES["action.call_webhook"].out_ports == ("success", "failure")
    assert {t.group for t in NODE_TYPES.values()} == {"trigger", "logic", "action"}


async def test_send_message_renders_and_sends():
    rt = MemoryRuntime()
    result = await run_turn(
        [make_plan(chain("f", ANY, send("Hi {{ contact.first_name }}", "marketing")))], make_turn("x"), rt
    )
    assert rt.sent == [("Hi Ana", "marketing")]
    assert result.trace[-1].output == {"text": "Hi Ana", "message_type": "marketing"}


async def test_send_message_that_renders_empty_is_an_error():
    rt = MemoryRuntime(ai_text=None)
    result = await run_turn([make_plan(chain("f", ANY, send("{{ nothing }}")))], make_turn("x"), rt)
    assert rt.sent == []
    assert "rendered empty" in trace_of(result, "a1").error


@pytest.mark.parametrize(
    ("action", "expected_state", "expected_write"),
    [
        (ai("disable"), AIState(ai_enabled=False, custom_prompt="old", context={"a": 1}), (False, "old")),
        (ai("enable"), AIState(ai_enabled=True, custom_prompt="old", context={"a": 1}), (True, "old")),
        (
            ai("custom_prompt", "Be brief with {{ contact.first_name }}"),
            AIState(ai_enabled=True, custom_prompt="Be brief with Ana", context={"a": 1}),
            (True, "Be brief with Ana"),
        ),
    ],
)
async def test_control_ai_response(action, expected_state, expected_write):
    rt = MemoryRuntime(context={"a": 1})
    start = AIState(ai_enabled=True, custom_prompt="old", context={"a": 1})
    result = await run_turn([make_plan(chain("f", ANY, action, send("ok")))], make_turn("x", ai=start), rt)
    assert result.ai == expected_state
    assert rt.ai_control == [expected_write]


async def test_reset_context_clears_context_and_keeps_control():
    rt = MemoryRuntime(context={"a": 1})
    start = AIState(ai_enabled=True, custom_prompt="p", context={"a": 1})
    result = await run_turn(
        [make_plan(chain("f", ANY, ai("reset_context"), send("ok")))], make_turn("x", ai=start), rt
    )
    assert rt.resets == 1 and rt.context == {}
    assert result.ai == AIState(ai_enabled=True, custom_prompt="p", context={})


async def test_update_ai_context_merges_rendered_values():
    rt = MemoryRuntime(context={"keep": True})
    node = {
        "type": "action.update_ai_context",
        "config": {
            "context_data": {"name": "{{ contact.first_name }}", "tags": "{{ contact.tags }}", "tier": "gold"}
        },
    }
    result = await run_turn([make_plan(chain("f", ANY, node, send("ok")))], make_turn("x", tags=["vip"]), rt)
    assert rt.context == {"keep": True, "name": "Ana", "tags": ["vip"], "tier": "gold"}
    assert result.ai.context == rt.context


async def test_set_conversation_status():
    rt = MemoryRuntime()
    await run_turn(
        [
            make_plan(
                chain("f", ANY, {"type": "action.set_conversation_status", "config": {"status": "resolved"}})
            )
        ],
        make_turn("x"),
        rt,
    )
    assert rt.statuses == ["resolved"]


async def test_add_and_remove_tag():
    rt = MemoryRuntime(tags={"old"})
    doc = chain(
        "f",
        ANY,
        {"type": "action.add_tag", "config": {"tag": "new"}},
        {"type": "action.remove_tag", "config": {"tag": "old"}},
        {"type": "action.add_tag", "config": {"tag": "new"}},
    )
    result = await run_turn([make_plan(doc)], make_turn("x"), rt)
    assert rt.tags == {"new"}
    assert [trace_of(result, n).output for n in ("a1", "a2", "a3")] == [
        {"tag": "new", "added": True},
        {"tag": "old", "removed": True},
        {"tag": "new", "added": False},
    ]


@pytest.mark.parametrize(
    ("left", "op", "right", "expected"),
    [
        ("Ana", "equals", "ana", True),
        (3, "equals", "3", True),
        ("a", "not_equals", "b", True),
        (["vip", "new"], "contains", "VIP", True),
        ("hello world", "contains", "World", True),
        ("hello", "not_contains", "bye", True),
        ({"k": 1}, "contains", "k", True),
        (None, "contains", "x", False),
        ("10", "greater_than", 9, True),
        (2.5, "less_than", "3", True),
        ("x", "exists", None, True),
        ("", "exists", None, False),
        (None, "exists", None, False),
        ("  ", "is_empty", None, True),
        ([], "is_empty", None, True),
        (0, "is_empty", None, False),
        ("order 123", "matches", r"\d{3}", True),
        ("none", "matches", r"^\d+$", False),
    ],
)
def test_condition_operators(left, op, right, expected):
    assert evaluate(left, op, right) is expected


@pytest.mark.parametrize(("first_name", "branch"), [("Ana", "yes"), ("Bob", "no")])
async def test_condition_follows_true_or_false_port(first_name, branch):
    doc = {
        "name": "cond",
        "nodes": [
            {"id": "t", **ANY},
            {
                "id": "c",
                "type": "logic.condition",
                "config": {"left": "{{ contact.first_name }}", "op": "equals", "right": "ana"},
            },
            {"id": "y", **send("yes")},
            {"id": "n", **send("no")},
        ],
        "edges": [
            {"from": "t", "to": "c"},
            {"from": "c", "to": "y", "port": "true"},
            {"from": "c", "to": "n", "port": "false"},
        ],
    }
    rt = MemoryRuntime()
    await run_turn([make_plan(doc)], make_turn("x", first_name=first_name), rt)
    assert rt.sent == [(branch, "support")]


async def test_condition_exists_does_not_fail_on_undefined_names_in_strict_mode():
    doc = chain(
        "f", ANY, {"type": "logic.condition", "config": {"left": "{{ vars.missing }}", "op": "exists"}}
    )
    result = await run_turn([make_plan(doc)], make_turn("x"), MemoryRuntime(ai_text=None), strict=True)
    assert trace_of(result, "a1").port == "false" and trace_of(result, "a1").error is None


async def test_condition_comparing_text_to_number_is_a_node_error():
    doc = chain(
        "f", ANY, {"type": "logic.condition", "config": {"left": "abc", "op": "greater_than", "right": 3}}
    )
    doc["nodes"].append({"id": "s", **send("never")})
    doc["edges"] += [{"from": "a1", "to": "s", "port": "true"}, {"from": "a1", "to": "s", "port": "false"}]
    rt = MemoryRuntime(ai_text=None)
    result = await run_turn([make_plan(doc)], make_turn("x"), rt)
    assert "not a number" in trace_of(result, "a1").error
    assert rt.sent == []


def webhook_flow(**config) -> dict:
    return {
        "name": "hook",
        "nodes": [
            {"id": "t", **ANY},
            {
                "id": "w",
                "type": "action.call_webhook",
                "config": {"url": "https://shop.example.com/api", **config},
            },
            {"id": "ok", **send("then ok")},
            {"id": "ko", **send("then ko")},
        ],
        "edges": [
            {"from": "t", "to": "w"},
            {"from": "w", "to": "ok", "port": "success"},
            {"from": "w", "to": "ko", "port": "failure"},
        ],
    }


async def test_call_webhook_success_sends_message_and_follows_success():
    rt = MemoryRuntime()
    result = await run_turn(
        [
            make_plan(
                webhook_flow(
                    success_message="Order {{ response.order_id }} created!",
                    payload_template={"who": "{{ contact.first_name }}", "n": "{{ 2 }}"},
                )
            )
        ],
        make_turn("x"),
        rt,
    )
    assert rt.payloads == [{"who": "Ana", "n": 2}]
    assert rt.sent == [("Order A-1 created!", "support"), ("then ok", "support")]
    assert result.webhook.status == "success"
    assert rt.webhook_calls[0].node_id == "w" and rt.webhook_calls[0].confidence is None


async def test_call_webhook_failure_follows_failure_port_and_records_error():
    rt = MemoryRuntime(
        webhook=WebhookOutcome(status=WebhookStatus.FAILURE, status_code=500, error="HTTP 500", attempts=4)
    )
    result = await run_turn([make_plan(webhook_flow(failure_message="Sorry"))], make_turn("x"), rt)
    assert rt.sent == [("Sorry", "support"), ("then ko", "support")]
    hook = next(t for t in result.trace if t.node_id == "w")
    assert hook.port == "failure" and hook.error == "HTTP 500"


async def test_call_webhook_scheduled_stops_the_branch():
    rt = MemoryRuntime(webhook=WebhookOutcome(status=WebhookStatus.SCHEDULED, attempts=1))
    result = await run_turn([make_plan(webhook_flow(success_message="done"))], make_turn("x"), rt)
    assert rt.sent == []
    assert result.webhook.status == "scheduled"


async def test_call_webhook_that_raises_follows_failure_port():
    rt = MemoryRuntime(fail={"call_webhook"})
    result = await run_turn([make_plan(webhook_flow())], make_turn("x"), rt)
    assert rt.sent == [("then ko", "support")]
    assert "call_webhook is down" in next(t for t in result.trace if t.node_id == "w").error


@pytest.mark.parametrize(
    ("kind", "trigger_type"),
    [
        (EventKind.CONVERSATION_CREATED, "when.conversation_created"),
        (EventKind.CONTACT_CREATED, "when.contact_created"),
    ],
)
async def test_lifecycle_triggers(kind, trigger_type):
    rt = MemoryRuntime()
    doc = chain(
        "welcome",
        {"type": trigger_type, "config": {}},
        send("Welcome {{ contact.first_name }} ({{ event.kind }})"),
    )
    result = await run_turn([make_plan(doc)], make_turn(None, events=[TurnEvent(kind=kind)]), rt)
    assert rt.sent == [(f"Welcome Ana ({kind.value})", "support")]
    assert result.layer == "trigger" and rt.ai_calls == []


@pytest.mark.parametrize(
    ("kind", "trigger_type"),
    [(EventKind.TAG_ADDED, "when.tag_added"), (EventKind.TAG_REMOVED, "when.tag_removed")],
)
async def test_tag_triggers_match_their_tag_only(kind, trigger_type):
    rt = MemoryRuntime()
    doc = chain("tags", {"type": trigger_type, "config": {"tag": "VIP"}}, send("tag {{ event.tag }}"))
    events = [TurnEvent(kind=kind, data={"tag": "vip"}), TurnEvent(kind=kind, data={"tag": "other"})]
    await run_turn([make_plan(doc)], make_turn(None, events=events), rt)
    assert rt.sent == [("tag vip", "support")]


async def test_message_triggers_keywords_regex_any():
    rt = MemoryRuntime()
    plans = [
        make_plan(
            chain(
                "kw",
                {
                    "type": "when.message_received",
                    "config": {"match": {"kind": "keywords", "keywords": ["ayuda"]}},
                },
                send("kw"),
            )
        ),
        make_plan(
            chain(
                "rx",
                {
                    "type": "when.message_received",
                    "config": {"match": {"kind": "regex", "pattern": r"order\s*#?(?P<order_id>\d+)"}},
                },
                send("order {{ vars.order_id }} / {{ order_id }}"),
            )
        ),
        make_plan(
            chain(
                "zz",
                {
                    "type": "when.message_received",
                    "config": {"match": {"kind": "keywords", "keywords": ["nothing"]}},
                },
                send("no"),
            )
        ),
    ]
    result = await run_turn(plans, make_turn("Necesito AYÚDA con order #42"), rt)
    assert rt.sent == [("kw", "support"), ("order 42 / 42", "support")]
    assert [f for f, _ in result.flows_run] == ["kw", "rx"]
