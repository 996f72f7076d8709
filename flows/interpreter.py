"""Runs one turn against the compiled flows of a workspace through a Runtime (DESIGN step 4).

Order of a turn (`run_turn`):

0. Pending external action (`turn.pending`), kind "confirmation": the reply is classified.
   approve -> `resolve_pending(p, "processing")` (compare-and-set; False = another worker has it,
   stop) then the chain after the intent trigger runs with `p.vars`, then
   `resolve_pending(p, "completed" | "failed")` (left "processing" when the webhook is
   "scheduled"). reject -> `resolve_pending(p, "rejected")`, nothing sent. unclear -> asked once
   more (`save_pending` with asked_count+1), else `resolve_pending(p, "expired")`.
   Kind "missing_variables": the reply is searched for the missing variables; the next missing
   one is asked for, or, once all are known, the action is confirmed or run as in (b). A reply
   that brings nothing twice in a row expires it.
   approve / reject / asked-again consume the turn (only events of `turn.events` still run);
   an expired pending lets the message go through (a)-(c) as a normal message, because a reply
   that answers nothing is most likely a new request.
a. Event triggers: every event of `turn.events`, then the message itself (match any / keywords /
   regex on `turn.text`), each against every plan ordered by priority (desc) then name. A chain
   that adds (removes) a tag raises `tag_added` (`tag_removed`) for the *other* flows, breadth
   first, up to `max_event_depth` levels; all chains share `max_steps` node runs. Both guards
   stop quietly and leave a "guard" entry in the trace and a warning. Named regex groups become
   `vars` of the chain.
b. External actions: only when the turn has text and no message-triggered chain in (a) has
   answered (sent a message or called a webhook); a chain that only adjusted the AI (prompt,
   context, tags) leaves the message to (b) and (c). The intent triggers of all plans go to one
   `detect_intent` call. Eligible = scores at or above their trigger's threshold; among them the
   highest flow priority wins, then the best confidence; a runner-up of the same priority within
   `ambiguity_margin` (or `Detection.ambiguous` for that match) makes it ambiguous and nothing runs.
   Then variables are extracted; missing required ones -> `save_pending(missing_variables)` with the
   variable's prompt; `requires_confirmation` or confidence < `auto_execute_threshold` ->
   `save_pending(confirmation)` with the rendered confirmation message; else the chain runs.
c. Core-intent AI fallback: when the turn has text, the AI is enabled (after (a)), nothing in (a)
   answered the message, no external action matched in (b), and no pending action consumed the
   turn: `answer_with_ai(turn, ai)`; its text is sent with message_type "ai".

`TurnResult.layer` is the layer that answered: "core_intent" if the AI replied, else
"external_action" if an intent matched (ran or asked), else "pending" if a pending reply was
consumed, else "trigger" if any chain ran, else None.

A node that raises is recorded in the trace (error) and follows its `failure` port when it has
one; other branches and chains still run. Runtime failures outside nodes (detection, AI answer,
pending bookkeeping) are recorded the same way; run_turn only propagates cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Sequence
from enum import Enum
from typing import Any, TypeVar

import msgspec

from flows.budget import TURN_BUDGET_S, TurnClock, charged, current_clock, turn_clock
from flows.graph import CompiledFlow, order_plans
from flows.matching import TextView, search
from flows.nodes.base import NodeContext, NodeError
from flows.nodes.registry import NODE_TYPES
from flows.phrases import ask_variable, confirm_action
from flows.runtime import (
    ActionRunStatus,
    AIAnswer,
    Detection,
    IntentCandidate,
    ReplyClass,
    Runtime,
    Superseded,
    WebhookOutcome,
    WebhookStatus,
)
from flows.schema import NodeGroup
from flows.templates import TemplateError, render_str, template_names
from flows.turn import AIState, PendingAction, PendingKind, Turn, TurnEvent, value_of

logger = logging.getLogger(__name__)

T = TypeVar("T")
YIELD_AFTER_S = 0.002
"""A turn that has computed this long since it last paused pauses as long before its next node."""


class Layer(str, Enum):
    TRIGGER = "trigger"
    EXTERNAL_ACTION = "external_action"
    CORE_INTENT = "core_intent"
    PENDING = "pending"


class NodeTrace(msgspec.Struct, kw_only=True):
    flow_id: str
    version: int
    node_id: str
    type: str
    input: dict[str, Any]
    output: dict[str, Any] | None
    port: str | None
    duration_us: float
    error: str | None


class TurnResult(msgspec.Struct, kw_only=True):
    layer: Layer | None
    flows_run: list[tuple[str, int]]
    detection: Detection | None
    vars: dict[str, Any]
    trace: list[NodeTrace]
    warnings: list[str]
    ai: AIState
    answer: AIAnswer | None
    webhook: WebhookOutcome | None
    steps: int
    pending: PendingAction | None = None  # the pending action saved during this turn, if any
    messages_sent: int = 0
    # Flows whose message triggers (any / keywords / regex) fired on the text: more than one
    # means the message was answered by overlapping flows.
    message_flows: list[str] = []


class _State:
    """Mutable bookkeeping of one turn (private to the interpreter)."""

    __slots__ = (
        "ai",
        "answer",
        "answered",
        "base_names",
        "budget_tripped",
        "chains",
        "clock",
        "detection",
        "flows_run",
        "layer",
        "max_event_depth",
        "max_steps",
        "message_flows",
        "pending",
        "plans",
        "runtime",
        "sent",
        "steps",
        "strict",
        "text",
        "trace",
        "turn",
        "vars",
        "warnings",
        "webhook",
        "yielded_at",
    )

    def __init__(
        self,
        turn: Turn,
        runtime: Runtime,
        *,
        strict: bool,
        max_steps: int,
        max_event_depth: int,
        plans: list[CompiledFlow],
    ) -> None:
        self.turn = turn
        self.runtime = runtime
        self.strict = strict
        self.max_steps = max_steps
        self.max_event_depth = max_event_depth
        self.plans = plans
        self.ai = turn.ai
        self.trace: list[NodeTrace] = []
        self.warnings: list[str] = []
        self.steps = 0
        self.flows_run: list[tuple[str, int]] = []
        self.sent = 0
        self.answered = False  # a message-triggered chain sent a message or called a webhook
        self.budget_tripped = False
        # The turn's own computations (renders, matches), against TURN_BUDGET_S (flows.budget).
        self.clock: TurnClock = current_clock() or TurnClock()
        self.yielded_at = 0.0  # clock.spent_s when the turn last let other tasks run
        self.webhook: WebhookOutcome | None = None
        self.detection: Detection | None = None
        self.layer: Layer | None = None
        self.vars: dict[str, Any] = {}
        self.pending: PendingAction | None = None
        self.answer: AIAnswer | None = None
        self.chains = 0
        self.message_flows: list[str] = []
        self.text = turn.text
        # Names shared by every chain of the turn; each chain adds vars, event and response.
        self.base_names = template_names(turn, vars={}, response=None, event=None)

    def names(self, vars: dict[str, Any], response: Any, event: dict[str, Any]) -> dict[str, Any]:
        names = {**vars, **self.base_names} if vars else dict(self.base_names)
        names["vars"] = dict(vars)
        names["event"] = event
        names["response"] = response
        return names

    def note(
        self,
        kind: str,
        *,
        flow_id: str = "",
        version: int = 0,
        node_id: str = "",
        input: dict | None = None,
        output: dict | None = None,
        error: str | None = None,
        duration_us: float = 0.0,
    ) -> None:
        self.trace.append(
            NodeTrace(
                flow_id=flow_id,
                version=version,
                node_id=node_id,
                type=kind,
                input=input or {},
                output=output,
                port=None,
                duration_us=duration_us,
                error=error,
            )
        )

    def guard(self, message: str, *, flow_id: str = "", version: int = 0, node_id: str = "") -> None:
        self.warnings.append(message)
        self.note("guard", flow_id=flow_id, version=version, node_id=node_id, error=message)

    def result(self) -> TurnResult:
        return TurnResult(
            layer=self.layer,
            flows_run=self.flows_run,
            detection=self.detection,
            vars=self.vars,
            trace=self.trace,
            warnings=self.warnings,
            ai=self.ai,
            answer=self.answer,
            webhook=self.webhook,
            steps=self.steps,
            pending=self.pending,
            messages_sent=self.sent,
            message_flows=self.message_flows,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (NodeError, TemplateError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def _guarded(
    st: _State, kind: str, call: Awaitable[T], *, flow_id: str = "", node_id: str = ""
) -> tuple[T | None, bool]:
    """Await a runtime call outside a node; a failure is traced and logged, never raised."""
    try:
        return await call, True
    except Superseded:
        raise
    except Exception as exc:  # the turn must finish; the failure is recorded in the trace and logs
        logger.exception(
            "runtime call failed",
            extra={
                "step": kind,
                "flow_id": flow_id,
                "node_id": node_id,
                "conversation_id": st.turn.conversation.id,
            },
        )
        st.note(kind, flow_id=flow_id, node_id=node_id, error=_describe(exc))
        st.warnings.append(f"{kind} failed: {_describe(exc)}")
        return None, False


# --- chains -----------------------------------------------------------------------


async def _run_chain(
    st: _State,
    plan: CompiledFlow,
    start: str,
    *,
    include_start: bool,
    port: str | None,
    vars: dict[str, Any],
    response: Any,
    event: dict[str, Any],
    trigger: dict[str, Any],
    confidence: float | None,
    from_message: bool,
) -> list[TurnEvent]:
    """Run the nodes from `start` depth-first; returns the events the chain raised."""
    names = st.names(vars, response, event)
    ctx = NodeContext(
        turn=st.turn,
        runtime=st.runtime,
        names=names,
        vars=vars,
        strict=st.strict,
        ai=st.ai,
        flow_id=plan.flow_id,
        version=plan.version,
        confidence=confidence,
        trigger=trigger,
        warnings=st.warnings,
        templates=plan.templates,
    )
    key = (plan.flow_id, plan.version)
    if key not in st.flows_run:
        st.flows_run.append(key)
    st.chains += 1
    raised: list[TurnEvent] = []
    stack = [start] if include_start else list(reversed(plan.next_nodes(start, port)))
    nodes, adjacency = plan.nodes, plan.adjacency
    while stack:
        node_id = stack.pop()
        if st.steps >= st.max_steps:
            if not st.budget_tripped:
                st.budget_tripped = True
                st.guard(
                    f"step budget of {st.max_steps} node runs used up; node {node_id!r} and the rest of "
                    "the turn's chains were skipped",
                    flow_id=plan.flow_id,
                    version=plan.version,
                    node_id=node_id,
                )
            break
        if st.clock.exhausted:
            if not st.budget_tripped:
                st.budget_tripped = True
                st.guard(
                    f"the turn used up its {st.clock.limit_s * 1000:.0f} ms for templates and matching; "
                    f"node {node_id!r} and the rest of the turn's chains were skipped",
                    flow_id=plan.flow_id,
                    version=plan.version,
                    node_id=node_id,
                )
            break
        computed_s = st.clock.spent_s - st.yielded_at
        if computed_s >= YIELD_AFTER_S:
            # Templates run on the event loop: give other conversations' turns as much time as
            # this one just took, so a turn that computes gets at most half of the loop.
            st.yielded_at = st.clock.spent_s
            await asyncio.sleep(computed_s)
        st.steps += 1
        node = nodes[node_id]
        spec = NODE_TYPES[node.type]
        ctx.node_id = node_id
        ctx.ai = st.ai
        started = time.perf_counter_ns()
        try:
            out = await spec.run(ctx, node.config)
        except Superseded:
            raise
        except Exception as exc:  # a failing node is recorded and follows its failure port; the turn goes on
            error = _describe(exc)
            if not isinstance(exc, (NodeError, TemplateError)):
                logger.exception(
                    "node failed",
                    extra={
                        "flow_id": plan.flow_id,
                        "node_id": node_id,
                        "conversation_id": st.turn.conversation.id,
                    },
                )
            duration = (time.perf_counter_ns() - started) / 1000
            has_failure = "failure" in spec.out_ports
            st.trace.append(
                NodeTrace(
                    flow_id=plan.flow_id,
                    version=plan.version,
                    node_id=node_id,
                    type=node.type,
                    input=plan.inputs[node_id],
                    output=None,
                    port="failure" if has_failure else None,
                    duration_us=duration,
                    error=error,
                )
            )
            if has_failure:
                stack.extend(reversed(adjacency[node_id].get("failure", ())))
            continue
        duration = (time.perf_counter_ns() - started) / 1000
        if out.ai is not None:
            st.ai = out.ai
        if out.sent:
            st.sent += out.sent
        if from_message and (out.sent or out.webhook is not None):
            st.answered = True
        if out.webhook is not None:
            st.webhook = out.webhook
        if out.events:
            raised.extend(out.events)
        st.trace.append(
            NodeTrace(
                flow_id=plan.flow_id,
                version=plan.version,
                node_id=node_id,
                type=node.type,
                input=trigger if spec.group == NodeGroup.TRIGGER else plan.inputs[node_id],
                output=out.output,
                port=out.port,
                duration_us=duration,
                error=out.error,
            )
        )
        if not out.halt:
            targets = adjacency[node_id].get(out.port)
            if targets:
                stack.extend(reversed(targets))
    return raised


def _event_matches(plan: CompiledFlow, event: TurnEvent) -> list[str]:
    # Keyed by the plain string: callers may build TurnEvent with the enum or its value.
    found = plan.triggers.get(value_of(event.kind))
    if not found:
        return []
    tag = str(event.data.get("tag", "")).casefold()
    return [t.node_id for t in found if t.tag is None or t.tag == tag]


async def _run_events(st: _State, queue: deque[tuple[TurnEvent | None, int, str | None, bool]]) -> bool:
    """Breadth-first over events (None = the message); returns True if a message trigger matched."""
    text = st.text
    view: TextView | None = None
    message_matched = False
    while queue:
        if st.budget_tripped:
            break
        event, depth, source, from_message = queue.popleft()
        for plan in st.plans:
            if plan.flow_id == source:
                continue  # a flow's own tag change does not re-trigger it
            starts: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
            if event is None:
                if not plan.message_triggers:
                    continue
                if view is None:
                    view = TextView(text)
                if not plan.scan_always and plan.trigger_words.isdisjoint(view.words):
                    continue
                for trig in plan.message_triggers:
                    if trig.kind == "any":
                        starts.append((trig.node_id, {"text": text}, {}))
                    elif trig.kind == "keywords":
                        assert trig.keywords is not None  # compiled for every keywords trigger
                        found = trig.keywords.matches(view.words, view.padded)
                        if found:
                            starts.append((trig.node_id, {"text": text, "keywords": found}, {}))
                    else:
                        assert trig.regex is not None  # compiled for every regex trigger
                        with charged(st.clock):
                            m = search(trig.regex, text)
                        if m is not None:
                            groups = {k: v for k, v in m.groupdict().items() if v is not None}
                            starts.append(
                                (trig.node_id, {"text": text, "match": m.group(0), "groups": groups}, groups)
                            )
                event_data = {"kind": "message_received", "text": text}
                if starts:
                    st.message_flows.append(plan.flow_id)
            else:
                matched = _event_matches(plan, event)
                if not matched:
                    continue
                kind = value_of(event.kind)
                starts = [(node_id, {"event": kind, **event.data}, {}) for node_id in matched]
                event_data = {"kind": kind, **event.data}
            for node_id, trigger, vars in starts:
                if event is None:
                    message_matched = True
                raised = await _run_chain(
                    st,
                    plan,
                    node_id,
                    include_start=True,
                    port=None,
                    vars=vars,
                    response=None,
                    event=event_data,
                    trigger=trigger,
                    confidence=None,
                    from_message=from_message or event is None,
                )
                for new in raised:
                    if depth + 1 > st.max_event_depth:
                        st.guard(
                            f"event {value_of(new.kind)} {new.data} not propagated: event depth limit "
                            f"{st.max_event_depth} reached (possible tag loop)",
                            flow_id=plan.flow_id,
                            version=plan.version,
                            node_id=node_id,
                        )
                    else:
                        queue.append((new, depth + 1, plan.flow_id, from_message or event is None))
    return message_matched


# --- external actions -----------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _choose(
    detection: Detection, candidates: list[IntentCandidate], margin: float
) -> tuple[IntentCandidate | None, float, str]:
    by_key = {(c.flow_id, c.node_id): c for c in candidates}
    scores: dict[tuple[str, str], float] = {}
    for score in list(detection.top) + ([detection.match] if detection.match else []):
        key = (score.flow_id, score.node_id)
        scores[key] = max(scores.get(key, 0.0), score.confidence)
    eligible = [
        (by_key[k], conf)
        for k, conf in scores.items()
        if k in by_key and conf >= by_key[k].confidence_threshold
    ]
    if not eligible:
        return None, 0.0, "no intent reached its confidence threshold"
    top = max(c.priority for c, _ in eligible)
    group = sorted((e for e in eligible if e[0].priority == top), key=lambda e: -e[1])
    best, conf = group[0]
    if len(group) > 1 and conf - group[1][1] < margin:
        return (
            None,
            conf,
            f"ambiguous: {best.display_name!r} and {group[1][0].display_name!r} are within {margin}",
        )
    if (
        detection.ambiguous
        and detection.match
        and (detection.match.flow_id, detection.match.node_id) == (best.flow_id, best.node_id)
    ):
        return None, conf, f"ambiguous: {detection.reason or 'the detector flagged it'}"
    return best, conf, ""


def _find_candidate(
    plans: list[CompiledFlow], flow_id: str, node_id: str
) -> tuple[CompiledFlow | None, IntentCandidate | None]:
    for plan in plans:
        if plan.flow_id == flow_id:
            for cand in plan.intents:
                if cand.node_id == node_id:
                    return plan, cand
            return plan, None
    return None, None


def _render_prompt(st: _State, text: str, vars: dict[str, Any]) -> str:
    names = st.names(vars, None, {})
    try:
        value = render_str(text, names, strict=False, warnings=st.warnings)
    except TemplateError as exc:
        st.warnings.append(str(exc))
        return ""
    return "" if value is None else str(value)


def _language(st: _State, pending: PendingAction | None = None) -> str:
    """The customer's language: this turn's detection, else the pending action's (no detection on a reply)."""
    detected = st.detection.language if st.detection else ""
    return detected or (pending.language if pending is not None else "")


def _variable_prompt(
    st: _State, cand: IntentCandidate, name: str, vars: dict[str, Any], language: str
) -> str:
    for spec in cand.variables:
        if spec.name == name and spec.prompt:
            text = _render_prompt(st, spec.prompt, vars)
            if text.strip():
                return text
    return ask_variable(name, language)


def _confirmation_prompt(
    st: _State, plan: CompiledFlow, cand: IntentCandidate, vars: dict[str, Any], language: str
) -> str:
    action = plan.intent_action(cand.node_id)
    prompt = getattr(action.config, "confirmation_message", "") if action is not None else ""
    if prompt:
        text = _render_prompt(st, prompt, vars)
        if text.strip():
            return text
    return confirm_action(cand.display_name, language)


async def _execute(
    st: _State,
    plan: CompiledFlow,
    cand: IntentCandidate,
    *,
    vars: dict[str, Any],
    confidence: float,
    pending: PendingAction | None,
) -> None:
    """Run the chain after the intent trigger; settles a pending action's status afterwards."""
    st.layer = Layer.EXTERNAL_ACTION
    st.vars = vars
    raised = await _run_chain(
        st,
        plan,
        cand.node_id,
        include_start=True,
        port=None,
        vars=vars,
        response=None,
        event={"kind": "intent", "intent": cand.display_name},
        confidence=confidence,
        trigger={"intent": cand.display_name, "confidence": confidence, "vars": vars},
        from_message=True,
    )
    if raised:
        await _run_events(st, deque((e, 1, plan.flow_id, True) for e in raised))
    if pending is not None:
        outcome = st.webhook
        if outcome is not None and outcome.status == WebhookStatus.SCHEDULED:
            return  # the background retry settles it
        failed = outcome is not None and outcome.status == WebhookStatus.FAILURE
        status = ActionRunStatus.FAILED if failed else ActionRunStatus.COMPLETED
        await _guarded(
            st,
            "pending.resolve",
            st.runtime.resolve_pending(pending, status),
            flow_id=plan.flow_id,
            node_id=cand.node_id,
        )


async def _ask(st: _State, pending: PendingAction, message: str) -> None:
    ok = (
        await _guarded(
            st,
            "pending.save",
            st.runtime.save_pending(pending, message=message),
            flow_id=pending.flow_id,
            node_id=pending.node_id,
        )
    )[1]
    if ok:
        st.pending = pending
        st.sent += 1
        st.note(
            "pending.ask",
            flow_id=pending.flow_id,
            node_id=pending.node_id,
            output={"kind": value_of(pending.kind), "message": message, "missing": list(pending.missing)},
        )


async def _decide(
    st: _State,
    plan: CompiledFlow,
    cand: IntentCandidate,
    *,
    vars: dict[str, Any],
    confidence: float,
    pending: PendingAction | None,
    auto_execute_threshold: float,
) -> None:
    """All variables known: confirm first or run (a pending action moves to "processing" first)."""
    st.layer = Layer.EXTERNAL_ACTION
    st.vars = vars
    if cand.requires_confirmation or confidence < auto_execute_threshold:
        confirm = PendingAction(
            id=pending.id if pending else uuid.uuid4().hex,
            flow_id=cand.flow_id,
            node_id=cand.node_id,
            kind=PendingKind.CONFIRMATION,
            vars=vars,
            missing=[],
            asked_count=0,
            confidence=confidence,
            language=_language(st, pending),
        )
        await _ask(st, confirm, _confirmation_prompt(st, plan, cand, vars, confirm.language))
        return
    if pending is not None:
        moved, ok = await _guarded(
            st,
            "pending.resolve",
            st.runtime.resolve_pending(pending, ActionRunStatus.PROCESSING),
            flow_id=pending.flow_id,
            node_id=pending.node_id,
        )
        if not (ok and moved):
            st.note(
                "pending.taken",
                flow_id=pending.flow_id,
                node_id=pending.node_id,
                output={"status": ActionRunStatus.PROCESSING.value},
            )
            return
    await _execute(st, plan, cand, vars=vars, confidence=confidence, pending=pending)


async def _handle_pending(st: _State, pending: PendingAction, auto_execute_threshold: float) -> bool:
    """Step 0; True when the reply was consumed by the pending action."""
    plan, cand = _find_candidate(st.plans, pending.flow_id, pending.node_id)
    if plan is None or cand is None:
        st.warnings.append(
            f"pending action {pending.id} refers to a flow or intent that is no longer active; expired"
        )
        await _guarded(st, "pending.resolve", st.runtime.resolve_pending(pending, ActionRunStatus.EXPIRED))
        return False
    text = st.text
    if pending.kind == PendingKind.CONFIRMATION:
        reply, ok = await _guarded(
            st,
            "pending.classify",
            st.runtime.classify_reply(text),
            flow_id=pending.flow_id,
            node_id=pending.node_id,
        )
        if not ok:
            return True  # keep it pending; the customer can answer again
        st.note(
            "pending.reply",
            flow_id=pending.flow_id,
            node_id=pending.node_id,
            input={"text": text},
            output={"reply": reply},
        )
        if reply == ReplyClass.APPROVE:
            st.layer = Layer.PENDING
            moved, ok = await _guarded(
                st,
                "pending.resolve",
                st.runtime.resolve_pending(pending, ActionRunStatus.PROCESSING),
                flow_id=pending.flow_id,
                node_id=pending.node_id,
            )
            if ok and moved:
                await _execute(
                    st, plan, cand, vars=dict(pending.vars), confidence=pending.confidence, pending=pending
                )
            return True
        if reply == ReplyClass.REJECT:
            st.layer = Layer.PENDING
            await _guarded(
                st, "pending.resolve", st.runtime.resolve_pending(pending, ActionRunStatus.REJECTED)
            )
            return True
        if pending.asked_count == 0:
            st.layer = Layer.PENDING
            again = msgspec.structs.replace(pending, asked_count=pending.asked_count + 1)
            await _ask(st, again, _confirmation_prompt(st, plan, cand, dict(pending.vars), again.language))
            return True
        await _guarded(st, "pending.resolve", st.runtime.resolve_pending(pending, ActionRunStatus.EXPIRED))
        return False

    specs = [v for v in cand.variables if v.name in pending.missing]
    extraction, ok = await _guarded(
        st,
        "pending.extract",
        st.runtime.extract_variables(text, specs),
        flow_id=pending.flow_id,
        node_id=pending.node_id,
    )
    got = {
        k: v
        for k, v in (extraction.values if ok and extraction else {}).items()
        if k in pending.missing and not _blank(v)
    }
    vars = {**pending.vars, **got}
    missing = [name for name in pending.missing if _blank(vars.get(name))]
    st.note(
        "pending.reply",
        flow_id=pending.flow_id,
        node_id=pending.node_id,
        input={"text": text},
        output={"extracted": got, "missing": missing},
    )
    if missing:
        if not got and pending.asked_count >= 1:
            await _guarded(
                st, "pending.resolve", st.runtime.resolve_pending(pending, ActionRunStatus.EXPIRED)
            )
            return False
        st.layer = Layer.PENDING
        again = msgspec.structs.replace(
            pending, vars=vars, missing=missing, asked_count=0 if got else pending.asked_count + 1
        )
        await _ask(st, again, _variable_prompt(st, cand, missing[0], vars, again.language))
        return True
    await _decide(
        st,
        plan,
        cand,
        vars=vars,
        confidence=pending.confidence,
        pending=pending,
        auto_execute_threshold=auto_execute_threshold,
    )
    return True


async def _external_actions(st: _State, *, auto_execute_threshold: float, ambiguity_margin: float) -> bool:
    """Step (b); True when an intent matched (ran or asked the customer)."""
    candidates = [c for p in st.plans for c in p.intents]
    if not candidates:
        return False
    text = st.text
    detection, ok = await _guarded(st, "intent.detect", st.runtime.detect_intent(text, candidates))
    if not ok or detection is None:
        return False
    st.detection = detection
    cand, confidence, reason = _choose(detection, candidates, ambiguity_margin)
    st.note(
        "intent.detect",
        input={"text": text, "candidates": len(candidates)},
        output={
            "engine": detection.engine,
            "match": cand.display_name if cand else None,
            "confidence": confidence,
            "reason": reason or detection.reason,
        },
    )
    if cand is None:
        if reason.startswith("ambiguous"):
            st.warnings.append(f"intent {reason}")
        return False
    plan, _ = _find_candidate(st.plans, cand.flow_id, cand.node_id)
    assert plan is not None
    vars: dict[str, Any] = {v.name: v.default for v in cand.variables if v.default is not None}
    if cand.variables:
        extraction, ok = await _guarded(
            st,
            "intent.extract",
            st.runtime.extract_variables(text, list(cand.variables)),
            flow_id=cand.flow_id,
            node_id=cand.node_id,
        )
        if ok and extraction is not None:
            vars.update({k: v for k, v in extraction.values.items() if not _blank(v)})
    missing = [v.name for v in cand.variables if v.required and _blank(vars.get(v.name))]
    st.layer = Layer.EXTERNAL_ACTION
    st.vars = vars
    if missing:
        ask = PendingAction(
            id=uuid.uuid4().hex,
            flow_id=cand.flow_id,
            node_id=cand.node_id,
            kind=PendingKind.MISSING_VARIABLES,
            vars=vars,
            missing=missing,
            asked_count=0,
            confidence=confidence,
            language=_language(st),
        )
        await _ask(st, ask, _variable_prompt(st, cand, missing[0], vars, ask.language))
        return True
    await _decide(
        st,
        plan,
        cand,
        vars=vars,
        confidence=confidence,
        pending=None,
        auto_execute_threshold=auto_execute_threshold,
    )
    return True


# --- entry points -----------------------------------------------------------------


async def run_turn(
    plans: Sequence[CompiledFlow],
    turn: Turn,
    runtime: Runtime,
    *,
    strict: bool = False,
    auto_execute_threshold: float = 0.9,
    ambiguity_margin: float = 0.05,
    max_steps: int = 200,
    max_event_depth: int = 3,
    cpu_budget_s: float = TURN_BUDGET_S,
) -> TurnResult:
    """Run one turn (see the module docstring for the order). Plans run whatever their doc status.

    Its templates and matches together may take `cpu_budget_s` (flows.budget): past it, the
    turn's remaining nodes are skipped with a guard in the trace.
    """
    with turn_clock(cpu_budget_s):
        return await _run_turn(
            plans,
            turn,
            runtime,
            strict=strict,
            auto_execute_threshold=auto_execute_threshold,
            ambiguity_margin=ambiguity_margin,
            max_steps=max_steps,
            max_event_depth=max_event_depth,
        )


async def _run_turn(
    plans: Sequence[CompiledFlow],
    turn: Turn,
    runtime: Runtime,
    *,
    strict: bool,
    auto_execute_threshold: float,
    ambiguity_margin: float,
    max_steps: int,
    max_event_depth: int,
) -> TurnResult:
    st = _State(
        turn,
        runtime,
        strict=strict,
        max_steps=max_steps,
        max_event_depth=max_event_depth,
        plans=order_plans(plans),
    )
    text = st.text
    message_free = True  # the message still needs handling by (a)-(c)
    if turn.pending is not None and text:
        message_free = not await _handle_pending(st, turn.pending, auto_execute_threshold)
    queue: deque[tuple[TurnEvent | None, int, str | None, bool]] = deque(
        (e, 0, None, False) for e in turn.events
    )
    if text and message_free:
        queue.append((None, 0, None, True))
    if queue:
        await _run_events(st, queue)
        if st.chains and st.layer is None:
            st.layer = Layer.TRIGGER
    if not text or not message_free or st.answered:
        return st.result()
    if await _external_actions(
        st, auto_execute_threshold=auto_execute_threshold, ambiguity_margin=ambiguity_margin
    ):
        return st.result()
    if st.ai.ai_enabled:
        answer, ok = await _guarded(st, "ai.answer", runtime.answer_with_ai(turn, st.ai))
        if ok and answer is not None:
            st.answer = answer
            st.note(
                "ai.answer",
                input={"text": text},
                output={
                    "intent": answer.intent,
                    "confidence": answer.confidence,
                    "engine": answer.engine,
                    "skipped_reason": answer.skipped_reason,
                },
            )
            if answer.text:
                sent = await _guarded(st, "ai.send", runtime.send_message(answer.text, message_type="ai"))
                if sent[1]:
                    st.sent += 1
                    st.layer = Layer.CORE_INTENT
    return st.result()


async def continue_from(
    plan: CompiledFlow,
    node_id: str,
    port: str | None,
    turn: Turn,
    runtime: Runtime,
    *,
    vars: dict[str, Any],
    response: Any = None,
    outcome: WebhookOutcome | None = None,
    strict: bool = False,
    plans: Sequence[CompiledFlow] = (),
    max_steps: int = 200,
    max_event_depth: int = 3,
    cpu_budget_s: float = TURN_BUDGET_S,
) -> TurnResult:
    """Run the nodes after `node_id`'s `port` (after a background webhook retry, or an approved confirmation).

    When `node_id`'s type can resume (a call_webhook node, `port` "success"/"failure"), that node's
    success/failure message is sent first (rendered with `response`), exactly as if the call had
    finished inline; `outcome` (how the background call ended) gives that node's error its reason.
    Tag events raised here reach `plans` (other flows), if given. The same CPU
    budget as a turn applies.
    """
    with turn_clock(cpu_budget_s):
        return await _continue_from(
            plan,
            node_id,
            port,
            turn,
            runtime,
            vars=vars,
            response=response,
            outcome=outcome,
            strict=strict,
            plans=plans,
            max_steps=max_steps,
            max_event_depth=max_event_depth,
        )


async def _continue_from(
    plan: CompiledFlow,
    node_id: str,
    port: str | None,
    turn: Turn,
    runtime: Runtime,
    *,
    vars: dict[str, Any],
    response: Any,
    outcome: WebhookOutcome | None,
    strict: bool,
    plans: Sequence[CompiledFlow],
    max_steps: int,
    max_event_depth: int,
) -> TurnResult:
    st = _State(
        turn,
        runtime,
        strict=strict,
        max_steps=max_steps,
        max_event_depth=max_event_depth,
        plans=order_plans(plans) if plans else [plan],
    )
    st.layer = Layer.EXTERNAL_ACTION
    st.vars = dict(vars)
    node = plan.nodes.get(node_id)
    if node is None:
        st.guard(
            f"node {node_id!r} is not in flow {plan.flow_id} version {plan.version}; nothing to continue",
            flow_id=plan.flow_id,
            version=plan.version,
            node_id=node_id,
        )
        return st.result()
    raised: list[TurnEvent] = []
    spec = NODE_TYPES[node.type]
    if spec.resume is not None and port is not None and port in spec.out_ports:
        names = template_names(turn, vars=vars, response=response, event=None)
        ctx = NodeContext(
            turn=turn,
            runtime=runtime,
            names=names,
            vars=dict(vars),
            strict=strict,
            ai=st.ai,
            flow_id=plan.flow_id,
            version=plan.version,
            node_id=node_id,
            warnings=st.warnings,
            templates=plan.templates,
        )
        started = time.perf_counter_ns()
        try:
            out = await spec.resume(ctx, node.config, port, response, outcome)
            st.sent += out.sent
            st.trace.append(
                NodeTrace(
                    flow_id=plan.flow_id,
                    version=plan.version,
                    node_id=node_id,
                    type=node.type,
                    input=plan.inputs[node_id],
                    output=out.output,
                    port=port,
                    duration_us=(time.perf_counter_ns() - started) / 1000,
                    error=out.error,
                )
            )
        except Superseded:
            raise
        except Exception as exc:  # recorded like any node failure; the continuation still runs
            st.trace.append(
                NodeTrace(
                    flow_id=plan.flow_id,
                    version=plan.version,
                    node_id=node_id,
                    type=node.type,
                    input=plan.inputs[node_id],
                    output=None,
                    port=port,
                    duration_us=(time.perf_counter_ns() - started) / 1000,
                    error=_describe(exc),
                )
            )
    raised += await _run_chain(
        st,
        plan,
        node_id,
        include_start=False,
        port=port,
        vars=dict(vars),
        response=response,
        event={"kind": "continuation"},
        trigger={},
        confidence=None,
        from_message=True,
    )
    if raised and plans:
        await _run_events(st, deque((e, 1, plan.flow_id, True) for e in raised))
    return st.result()
