"""Semantics of a turn: order of layers, AI state, tag events and guards, pending external actions."""

from __future__ import annotations

import pathlib

import msgspec
import pytest
from memory_runtime import MemoryRuntime, chain, make_plan, make_turn

from flows.graph import ExternalAction, compile_flow, external_actions, intent_candidates
from flows.interpreter import continue_from, run_turn
from flows.runtime import Detection, IntentScore, Superseded, WebhookOutcome, WebhookStatus
from flows.turn import AIState, EventKind, PendingAction, PendingKind, TurnEvent
from flows.validate import decode_document

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "flows" / "examples"


def example(name: str):
    doc = decode_document((EXAMPLES / f"{name}.flow.json").read_bytes())
    return compile_flow(doc, flow_id=name, version=1)


def kw(*words: str) -> dict:
    return {
        "type": "when.message_received",
        "config": {"match": {"kind": "keywords", "keywords": list(words)}},
    }


def send(text: str) -> dict:
    return {"type": "action.send_message", "config": {"text": text}}


def tag(action: str, name: str) -> dict:
    return {"type": f"action.{action}_tag", "config": {"tag": name}}


ANY = {"type": "when.message_received", "config": {"match": {"kind": "any"}}}


def order_runtime(confidence: float = 0.95, **options) -> MemoryRuntime:
    options.setdefault("extract", {"product": "iPhone", "quantity": 3})
    return MemoryRuntime(intents={"Create order": confidence}, **options)


# --- the seed scenarios ----------------------------------------------------------------


async def test_premium_support_sets_prompt_context_and_replies():
    rt = MemoryRuntime()
    result = await run_turn([example("premium-support")], make_turn("I need HELP"), rt)
    assert rt.ai_control == [(True, "You are a premium assistant for Ana.")]
    assert rt.context == {"support_tier": "premium"}
    assert rt.sent == [("I've escalated your request.", "support")]
    assert result.layer == "trigger" and rt.ai_calls == []
    assert result.ai == AIState(
        ai_enabled=True,
        custom_prompt="You are a premium assistant for Ana.",
        context={"support_tier": "premium"},
    )


async def test_spanish_support_sets_the_prompt_then_the_ai_answers_with_it():
    rt = MemoryRuntime(ai_text="¡Hola! ¿En qué puedo ayudarte?")
    result = await run_turn([example("spanish-support")], make_turn("Hola, necesito información"), rt)
    assert rt.sent == [("¡Hola! ¿En qué puedo ayudarte?", "ai")]
    assert result.layer == "core_intent"
    ((_, ai_state),) = rt.ai_calls
    assert ai_state.custom_prompt.startswith("Eres un asistente") and ai_state.context == {"language": "es"}


async def test_human_handoff_disables_ai_and_sets_status():
    rt = MemoryRuntime()
    result = await run_turn([example("human-handoff")], make_turn("can I talk to a real person?"), rt)
    assert rt.ai_control == [(False, None)] and rt.statuses == ["pending"] and rt.tags == {"handoff"}
    assert rt.sent == [("A member of our team will take over shortly, Ana.", "support")]
    assert result.ai.ai_enabled is False and rt.ai_calls == []


async def test_create_order_runs_the_webhook_with_typed_payload():
    rt = order_runtime()
    result = await run_turn([example("create-order-webhook")], make_turn("I want to buy 3 iPhones"), rt)
    assert rt.payloads == [{"product": "iPhone", "quantity": 3, "phone": "+15550001111"}]
    assert rt.sent == [("Order A-1 created!", "support")]
    assert result.layer == "external_action" and result.vars == {"product": "iPhone", "quantity": 3}
    assert rt.webhook_calls[0].confidence == 0.95
    ((_text, candidates),) = rt.detect_calls
    assert [c.display_name for c in candidates] == ["Create order"]
    assert {e.language for e in candidates[0].training_examples} == {"en", "ar", "es"}
    assert rt.ai_calls == []


# --- layer order ------------------------------------------------------------------


async def test_no_match_falls_back_to_the_ai():
    rt = MemoryRuntime()
    result = await run_turn([example("premium-support")], make_turn("what time is it"), rt)
    assert rt.sent == [("AI answer", "ai")] and result.layer == "core_intent"
    assert result.answer.engine == "memory"


async def test_ai_disabled_means_silence():
    rt = MemoryRuntime()
    result = await run_turn([], make_turn("hello", ai=AIState(ai_enabled=False)), rt)
    assert rt.sent == [] and rt.ai_calls == [] and result.layer is None


async def test_event_flows_run_before_message_flows_by_priority_then_name():
    rt = MemoryRuntime()
    plans = [
        make_plan(chain("b-low", kw("hi"), send("b-low"))),
        make_plan(chain("a-low", kw("hi"), send("a-low"))),
        make_plan(chain("high", kw("hi"), send("high"), priority=5)),
        make_plan(chain("welcome", {"type": "when.conversation_created", "config": {}}, send("welcome"))),
    ]
    await run_turn(plans, make_turn("hi", events=[TurnEvent(kind=EventKind.CONVERSATION_CREATED)]), rt)
    assert [t for t, _ in rt.sent] == ["welcome", "high", "a-low", "b-low"]


async def test_a_message_flow_that_only_tags_leaves_the_message_to_the_ai():
    rt = MemoryRuntime()
    result = await run_turn([make_plan(chain("log", ANY, tag("add", "seen")))], make_turn("anything"), rt)
    assert rt.tags == {"seen"} and rt.sent == [("AI answer", "ai")] and result.layer == "core_intent"


async def test_a_replying_trigger_skips_external_actions():
    rt = order_runtime()
    plans = [example("create-order-webhook"), make_plan(chain("buy", kw("buy"), send("Use our shop")))]
    result = await run_turn(plans, make_turn("I want to buy 3 iPhones"), rt)
    assert rt.sent == [("Use our shop", "support")] and rt.detect_calls == [] and result.layer == "trigger"


async def test_intent_below_threshold_falls_back_to_the_ai():
    rt = order_runtime(confidence=0.5)
    result = await run_turn([example("create-order-webhook")], make_turn("buy?"), rt)
    assert rt.webhook_calls == [] and result.layer == "core_intent" and result.detection is not None


def intent_doc(name: str, priority: int = 0) -> dict:
    return chain(
        name,
        {
            "type": "when.message_received",
            "config": {
                "match": {"kind": "intent", "display_name": name, "training_examples": [{"text": name}]}
            },
        },
        send(f"ran {name}"),
        priority=priority,
    )


async def test_ambiguous_intents_run_nothing():
    rt = MemoryRuntime(intents={"one": 0.93, "two": 0.92})
    result = await run_turn([make_plan(intent_doc("one")), make_plan(intent_doc("two"))], make_turn("x"), rt)
    assert ("ran one", "support") not in rt.sent and any("ambiguous" in w for w in result.warnings)
    assert result.layer == "core_intent"


async def test_higher_priority_intent_wins_over_higher_confidence():
    rt = MemoryRuntime(intents={"one": 0.99, "two": 0.91})
    await run_turn(
        [make_plan(intent_doc("one")), make_plan(intent_doc("two", priority=1))], make_turn("x"), rt
    )
    assert rt.sent == [("ran two", "support")]


async def test_detector_flagged_ambiguity_is_respected():
    def detect(text, candidates):
        best = IntentScore(flow_id=candidates[0].flow_id, node_id=candidates[0].node_id, confidence=0.97)
        return Detection(match=best, top=[best], engine="t", ambiguous=True, reason="close call")

    rt = MemoryRuntime(intents=detect)
    await run_turn([make_plan(intent_doc("one"))], make_turn("x"), rt)
    assert rt.sent == [("AI answer", "ai")]


async def test_intent_candidates_carry_priority_and_confirmation():
    plans = [example("create-order-webhook"), make_plan(intent_doc("other", priority=3))]
    cands = intent_candidates(plans)
    assert [c.display_name for c in cands] == ["other", "Create order"]
    assert cands[1].requires_confirmation is False and [v.name for v in cands[1].variables] == [
        "product",
        "quantity",
    ]


async def test_an_intent_behind_a_condition_runs_the_webhook_the_plan_names_and_confirms_first():
    document = chain(
        "Guarded",
        {
            "type": "when.message_received",
            "config": {
                "match": {
                    "kind": "intent",
                    "display_name": "Create order",
                    "training_examples": [{"text": "buy"}],
                }
            },
        },
        {"type": "logic.condition", "config": {"left": "1", "op": "equals", "right": "1"}},
        {
            "type": "action.call_webhook",
            "config": {
                "url": "https://shop.example/orders",
                "requires_confirmation": True,
                "confirmation_message": "Place the order?",
            },
        },
    )
    document["edges"][1]["port"] = "true"
    plan = make_plan(document)
    assert plan.external_actions() == [ExternalAction(trigger_id="t", action_id="a2")]
    assert external_actions(document) == plan.external_actions()  # the same answer from a saved draft
    rt = order_runtime()
    result = await run_turn([plan], make_turn("buy"), rt)
    assert result.pending is not None and result.pending.kind == PendingKind.CONFIRMATION
    assert [message for _, message in rt.asked] == ["Place the order?"] and rt.webhook_calls == []


async def test_flows_whose_message_triggers_fired_are_named():
    plans = [
        make_plan(chain("A", kw("order"), send("a"))),
        make_plan(chain("B", kw("order", "human"), send("b"))),
    ]
    plans.append(make_plan(chain("C", kw("refund"), send("c"))))
    result = await run_turn(plans, make_turn("my order"), MemoryRuntime())
    assert sorted(result.message_flows) == ["A", "B"]
    assert (await run_turn(plans, make_turn("a refund"), MemoryRuntime())).message_flows == ["C"]


# --- AI state, strictness, failures ------------------------------------------------------


async def test_strict_undefined_name_is_a_node_error_and_lenient_a_warning():
    doc = chain("f", ANY, send("Hello {{ nobody }}!"))
    strict_rt, lenient_rt = MemoryRuntime(), MemoryRuntime()
    strict = await run_turn([make_plan(doc)], make_turn("x"), strict_rt, strict=True)
    lenient = await run_turn([make_plan(doc)], make_turn("x"), lenient_rt, strict=False)
    assert "nobody" in next(t for t in strict.trace if t.node_id == "a1").error
    assert strict_rt.sent == [("AI answer", "ai")]
    assert lenient_rt.sent == [("Hello !", "support")]
    assert any("nobody" in w for w in lenient.warnings)


async def test_a_failing_node_does_not_stop_other_chains():
    rt = MemoryRuntime(fail={"set_conversation_status"})
    plans = [
        make_plan(
            chain(
                "a",
                ANY,
                {"type": "action.set_conversation_status", "config": {"status": "closed"}},
                send("never"),
            )
        ),
        make_plan(chain("b", ANY, send("still here"))),
    ]
    result = await run_turn(plans, make_turn("x"), rt)
    assert rt.sent == [("still here", "support")]
    failed = next(t for t in result.trace if t.error)
    assert failed.flow_id == "a" and "set_conversation_status is down" in failed.error


async def test_runtime_failures_outside_nodes_are_recorded_not_raised():
    rt = MemoryRuntime(fail={"detect_intent", "answer_with_ai"})
    result = await run_turn([example("create-order-webhook")], make_turn("buy"), rt)
    assert {t.type for t in result.trace if t.error} == {"intent.detect", "ai.answer"}
    assert rt.sent == []


async def test_a_superseded_turn_stops_at_its_first_refused_effect():
    """Superseded is no node failure: no failure port, no other chain, nothing after it."""
    rt = MemoryRuntime(superseded={"set_conversation_status"})
    plans = [
        make_plan(
            chain(
                "a",
                ANY,
                {"type": "action.set_conversation_status", "config": {"status": "closed"}},
                send("never"),
            )
        ),
        make_plan(chain("b", ANY, send("nor this"))),
    ]
    with pytest.raises(Superseded, match="set_conversation_status refused"):
        await run_turn(plans, make_turn("x"), rt)
    assert rt.sent == []


async def test_a_superseded_runtime_call_outside_nodes_is_raised():
    rt = MemoryRuntime(superseded={"detect_intent"})
    with pytest.raises(Superseded):
        await run_turn([example("create-order-webhook")], make_turn("buy"), rt)
    assert rt.sent == []


# --- tag events and guards --------------------------------------------------------------


async def test_added_tag_triggers_other_flows_in_the_same_turn():
    rt = MemoryRuntime()
    plans = [
        make_plan(chain("tagger", kw("vip"), tag("add", "vip"), send("tagged"))),
        make_plan(
            chain(
                "on-vip",
                {"type": "when.tag_added", "config": {"tag": "vip"}},
                send("welcome vip {{ event.tag }}"),
            )
        ),
        make_plan(chain("self", {"type": "when.tag_added", "config": {"tag": "other"}}, send("no"))),
    ]
    result = await run_turn(plans, make_turn("I am VIP"), rt)
    assert rt.sent == [("tagged", "support"), ("welcome vip vip", "support")]
    assert [f for f, _ in result.flows_run] == ["tagger", "on-vip"]


async def test_tag_ping_pong_is_stopped_by_the_depth_guard():
    rt = MemoryRuntime()
    plans = [
        make_plan(chain("start", kw("go"), tag("add", "a"))),
        make_plan(
            chain(
                "ping",
                {"type": "when.tag_added", "config": {"tag": "a"}},
                tag("remove", "b"),
                tag("add", "b"),
            )
        ),
        make_plan(
            chain(
                "pong",
                {"type": "when.tag_added", "config": {"tag": "b"}},
                tag("remove", "a"),
                tag("add", "a"),
            )
        ),
    ]
    result = await run_turn(plans, make_turn("go"), rt, max_event_depth=3)
    guards = [t for t in result.trace if t.type == "guard"]
    # start (depth 0) -> ping (1) -> pong (2) -> ping (3); ping's own tag changes would be depth 4.
    assert len(guards) == 2 and all("depth limit 3" in g.error and g.flow_id == "ping" for g in guards)
    assert any("depth limit" in w for w in result.warnings)
    assert [f for f, _ in result.flows_run] == ["start", "ping", "pong"]
    assert result.steps == 2 + 3 * 3


async def test_step_budget_stops_the_turn():
    rt = MemoryRuntime()
    doc = chain("long", ANY, *[send(f"m{i}") for i in range(5)])
    result = await run_turn(
        [make_plan(doc), make_plan(chain("other", ANY, send("later")))], make_turn("x"), rt, max_steps=3
    )
    assert result.steps == 3 and [t for t, _ in rt.sent] == ["m0", "m1"]
    assert any(t.type == "guard" and "step budget of 3" in t.error for t in result.trace)


SLOW_TEXT = "{% for i in 'x' * 9000 %}{{ ('yx' * 2000) | list | sort | first }}{% endfor %}"


async def test_a_turn_stops_once_its_templates_used_up_its_cpu_budget():
    """issue 14: each render has its own time limit, and the turn's renders together have another."""
    rt = MemoryRuntime()
    hostile = chain("hostile", ANY)
    for i in range(40):  # forty branches from the trigger: a failing node does not stop the others
        hostile["nodes"].append({"id": f"slow{i}", **send(SLOW_TEXT)})
        hostile["edges"].append({"from": "t", "to": f"slow{i}"})
    result = await run_turn(
        [make_plan(hostile), make_plan(chain("other", ANY, send("later"), priority=-1))],
        make_turn("x"),
        rt,
        cpu_budget_s=0.12,
    )
    failed = [t for t in result.trace if t.type == "action.send_message"]
    assert failed and all("went over its budget" in (t.error or "") for t in failed)
    assert len(failed) < 40 and "later" not in [text for text, _ in rt.sent]
    assert any(t.type == "guard" and "used up its 120 ms" in t.error for t in result.trace)


# --- pending external actions ---------------------------------------------------------------


async def test_missing_variable_is_asked_then_filled_from_the_reply():
    rt = order_runtime(extract={})
    plans = [example("create-order-webhook")]
    first = await run_turn(plans, make_turn("I want to buy something"), rt)
    ((pending, message),) = rt.asked
    assert message == "Which product would you like to order?"
    assert (
        pending.kind == PendingKind.MISSING_VARIABLES
        and pending.missing == ["product"]
        and pending.vars == {"quantity": 1}
    )
    assert first.layer == "external_action" and first.pending == pending and rt.webhook_calls == []

    rt._extract = {"product": "iPad"}
    second = await run_turn(plans, make_turn("an iPad", pending=pending), rt)
    assert rt.payloads == [{"product": "iPad", "quantity": 1, "phone": "+15550001111"}]
    assert rt.resolutions == [(pending.id, "processing", True), (pending.id, "completed", True)]
    assert second.layer == "external_action" and rt.ai_calls == []


async def test_missing_variable_reply_without_it_is_asked_again_then_expires():
    rt = order_runtime(extract={})
    plans = [example("create-order-webhook")]
    await run_turn(plans, make_turn("buy"), rt)
    pending = rt.asked[-1][0]
    again = await run_turn(plans, make_turn("hmm", pending=pending), rt)
    assert again.layer == "pending" and rt.asked[-1][0].asked_count == 1
    rt._intents = {"Create order": 0.1}
    last = await run_turn(plans, make_turn("what are your hours?", pending=rt.asked[-1][0]), rt)
    assert rt.resolutions[-1] == (pending.id, "expired", True)
    assert last.layer == "core_intent" and rt.sent == [("AI answer", "ai")]  # handled as a new message


def confirmation(rt: MemoryRuntime) -> PendingAction:
    return next(p for p, _ in reversed(rt.asked) if p.kind == PendingKind.CONFIRMATION)


async def test_match_below_auto_execute_threshold_asks_for_confirmation_then_approve_runs():
    rt = order_runtime(confidence=0.85)
    plans = [example("create-order-webhook")]
    first = await run_turn(plans, make_turn("I want to buy 3 iPhones"), rt)
    pending = confirmation(rt)
    assert rt.webhook_calls == [] and first.pending == pending and pending.confidence == 0.85
    assert "Create order" in rt.asked[-1][1]

    second = await run_turn(plans, make_turn("yes please", pending=pending), rt)
    assert rt.payloads == [{"product": "iPhone", "quantity": 3, "phone": "+15550001111"}]
    assert rt.sent == [("Order A-1 created!", "support")]
    assert rt.resolutions == [(pending.id, "processing", True), (pending.id, "completed", True)]
    assert second.layer == "external_action"


def spanish(confidence: float):
    """A detector that matches Create order and says the customer writes Spanish."""

    def detect(text: str, candidates: list) -> Detection:
        (cand,) = [c for c in candidates if c.display_name == "Create order"]
        score = IntentScore(flow_id=cand.flow_id, node_id=cand.node_id, confidence=confidence)
        return Detection(match=score, top=[score], engine="memory", language="es")

    return detect


async def test_a_confirmation_asked_again_on_a_later_turn_keeps_the_customers_language():
    rt = order_runtime(confidence=0.85)
    rt._intents = spanish(0.85)
    plans = [example("create-order-webhook")]
    await run_turn(plans, make_turn("quiero comprar 3 iPhones"), rt)
    first = confirmation(rt)
    assert first.language == "es" and rt.asked[-1][1].startswith("¿Quieres que siga adelante")
    # No intent detection runs on a reply to a pending action: the language comes from the pending action.
    await run_turn(plans, make_turn("mmm", pending=first), rt)
    again = confirmation(rt)
    assert again.asked_count == 1 and again.language == "es"
    assert rt.asked[-1][1].startswith("¿Quieres que siga adelante")


async def test_a_question_after_a_missing_variable_keeps_the_customers_language():
    rt = order_runtime(confidence=0.85, extract={"quantity": 2})
    rt._intents = spanish(0.85)
    plans = [example("create-order-webhook")]
    await run_turn(plans, make_turn("quiero comprar"), rt)
    asked = rt.asked[-1][0]
    assert asked.kind == PendingKind.MISSING_VARIABLES and asked.language == "es"
    rt._extract = {"product": "iPad"}
    await run_turn(plans, make_turn("un iPad", pending=asked), rt)
    # All variables known on a later turn; confidence under the auto-execute threshold: confirm, in Spanish.
    assert confirmation(rt).language == "es" and rt.asked[-1][1].startswith("¿Quieres que siga adelante")


async def test_reject_cancels_without_running():
    rt = order_runtime(confidence=0.85)
    plans = [example("create-order-webhook")]
    await run_turn(plans, make_turn("buy 3 iPhones"), rt)
    result = await run_turn(plans, make_turn("no", pending=confirmation(rt)), rt)
    assert rt.webhook_calls == [] and rt.resolutions[-1][1:] == ("rejected", True)
    assert result.layer == "pending" and rt.sent == []


async def test_unclear_reply_is_asked_once_more_then_expires_and_the_message_goes_on():
    rt = order_runtime(confidence=0.85)
    plans = [example("create-order-webhook")]
    await run_turn(plans, make_turn("buy 3 iPhones"), rt)
    first = confirmation(rt)
    result = await run_turn(plans, make_turn("hmm", pending=first), rt)
    asked_again = confirmation(rt)
    assert asked_again.id == first.id and asked_again.asked_count == 1 and result.layer == "pending"
    rt._intents = {"Create order": 0.1}
    result = await run_turn(plans, make_turn("what are your opening hours", pending=asked_again), rt)
    assert rt.resolutions[-1] == (first.id, "expired", True)
    assert rt.webhook_calls == [] and rt.sent == [("AI answer", "ai")] and result.layer == "core_intent"


async def test_a_pending_action_taken_by_another_worker_runs_nothing():
    rt = order_runtime(confidence=0.85)
    plans = [example("create-order-webhook")]
    await run_turn(plans, make_turn("buy 3 iPhones"), rt)
    pending = confirmation(rt)
    rt.pending_status[pending.id] = "processing"  # someone else approved it first
    result = await run_turn(plans, make_turn("yes", pending=pending), rt)
    assert rt.webhook_calls == [] and rt.resolutions[-1] == (pending.id, "processing", False)
    assert result.layer == "pending"


async def test_requires_confirmation_uses_the_rendered_message():
    doc = decode_document((EXAMPLES / "create-order-webhook.flow.json").read_bytes())
    raw = doc.nodes[1].config
    hook = msgspec.structs.replace(
        raw,
        requires_confirmation=True,
        confirmation_message="Order {{ vars.quantity }} x {{ vars.product }}? Reply yes or no.",
    )
    doc = msgspec.structs.replace(
        doc, nodes=[doc.nodes[0], msgspec.structs.replace(doc.nodes[1], config=hook)]
    )
    rt = order_runtime(confidence=0.99)
    await run_turn([compile_flow(doc, flow_id="o", version=2)], make_turn("buy 3 iPhones"), rt)
    assert rt.asked[-1][1] == "Order 3 x iPhone? Reply yes or no." and rt.webhook_calls == []


async def test_pending_of_a_removed_flow_expires_and_the_message_goes_on():
    rt = MemoryRuntime()
    stale = PendingAction(
        id="p1", flow_id="gone", node_id="intent", kind=PendingKind.CONFIRMATION, confidence=0.9
    )
    rt.pending_status["p1"] = "awaiting_confirmation"
    result = await run_turn([], make_turn("yes", pending=stale), rt)
    assert rt.resolutions == [("p1", "expired", True)] and result.layer == "core_intent"


# --- continuation ---------------------------------------------------------------


async def test_continue_from_a_webhook_sends_its_message_and_runs_the_rest():
    doc = chain("c", ANY, {"type": "action.send_message", "config": {"text": "x"}})
    doc["nodes"][1] = {
        "id": "a1",
        "type": "action.call_webhook",
        "config": {"url": "https://x.example", "success_message": "Order {{ response.order_id }} created!"},
    }
    doc["nodes"].append({"id": "after", **send("Thanks {{ vars.product }}")})
    doc["edges"] = [{"from": "t", "to": "a1"}, {"from": "a1", "to": "after", "port": "success"}]
    rt = MemoryRuntime()
    result = await continue_from(
        make_plan(doc),
        "a1",
        "success",
        make_turn("x"),
        rt,
        vars={"product": "iPad"},
        response={"order_id": "Z-9"},
    )
    assert rt.sent == [("Order Z-9 created!", "support"), ("Thanks iPad", "support")]
    assert result.layer == "external_action" and rt.webhook_calls == []


@pytest.mark.parametrize(
    ("ended", "reason"),
    [
        (
            WebhookOutcome(
                status=WebhookStatus.FAILURE, error="connection failed: Name or service not known"
            ),
            "connection failed: Name or service not known",
        ),
        (WebhookOutcome(status=WebhookStatus.FAILURE, status_code=503), "the webhook answered 503"),
        (None, "the webhook call failed"),
    ],
)
async def test_a_webhook_that_failed_in_its_retries_says_why(ended, reason):
    """The run of a retried call that ended in failure names the last attempt's error, never 'answered None'."""
    doc = chain("c", ANY, {"type": "action.send_message", "config": {"text": "x"}})
    doc["nodes"][1] = {"id": "a1", "type": "action.call_webhook", "config": {"url": "https://x.example"}}
    doc["edges"] = [{"from": "t", "to": "a1"}]
    result = await continue_from(
        make_plan(doc), "a1", "failure", make_turn("x"), MemoryRuntime(), vars={}, outcome=ended
    )
    [trace] = [t for t in result.trace if t.node_id == "a1"]
    assert trace.error == reason and trace.port == "failure"


async def test_continue_from_after_an_intent_trigger_runs_its_chain():
    rt = MemoryRuntime()
    result = await continue_from(
        example("create-order-webhook"),
        "intent",
        None,
        make_turn("yes"),
        rt,
        vars={"product": "Mac", "quantity": 2},
    )
    assert rt.payloads == [{"product": "Mac", "quantity": 2, "phone": "+15550001111"}]
    assert result.webhook.status == "success"


async def test_events_and_pending_built_with_plain_strings_work():
    rt = MemoryRuntime()
    plans = [make_plan(chain("on-vip", {"type": "when.tag_added", "config": {"tag": "vip"}}, send("vip!")))]
    await run_turn(plans, make_turn(None, events=[TurnEvent(kind="tag_added", data={"tag": "VIP"})]), rt)
    assert rt.sent == [("vip!", "support")]

    rt = order_runtime(confidence=0.85)
    plans = [example("create-order-webhook")]
    await run_turn(plans, make_turn("buy 3 iPhones"), rt)
    asked = confirmation(rt)
    plain = msgspec.structs.replace(asked, kind="confirmation")
    await run_turn(plans, make_turn("yes", pending=plain), rt)
    assert rt.sent == [("Order A-1 created!", "support")]
