"""An in-memory flows.runtime.Runtime for tests and benchmarks: records every effect, scripted answers."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from flows.graph import CompiledFlow, compile_flow
from flows.matching import words
from flows.nodes.call_webhook import WebhookCall
from flows.runtime import (
    AIAnswer,
    Detection,
    Extraction,
    IntentCandidate,
    IntentScore,
    Superseded,
    WebhookOutcome,
    WebhookStatus,
)
from flows.schema import VariableSpec
from flows.templates import render_tree
from flows.turn import (
    AIState,
    ContactInfo,
    ConversationInfo,
    PendingAction,
    PendingKind,
    Turn,
    TurnEvent,
    TurnMessage,
)
from flows.validate import decode_document

APPROVE_WORDS = frozenset({"yes", "y", "ok", "okay", "sure", "confirm", "si", "نعم", "اكيد"})
REJECT_WORDS = frozenset({"no", "nope", "cancel", "stop", "لا"})

# Compare-and-set transitions of an external-action run (DESIGN "External action runs").
TRANSITIONS = {
    "awaiting_confirmation": {"processing", "rejected", "expired"},
    "pending": {"processing", "expired", "rejected"},
    "processing": {"completed", "failed"},
}


class MemoryRuntime:
    """Every effect lands in a public attribute; answers are scripted through constructor options.

    - `intents`: display_name -> confidence, or a callable (text, candidates) -> Detection.
      Without it, confidence = share of an example's words found in the text (best example).
    - `extract`: name -> value, or a callable (text, specs) -> dict.
    - `webhook`: a WebhookOutcome or a callable (WebhookCall) -> WebhookOutcome.
    - `ai_text`: what the core-intent AI answers (None = skipped).
    - `fail`: names of methods that raise RuntimeError (to test error paths).
    - `superseded`: names of methods that raise Superseded (the turn lost its conversation to another).
    """

    def __init__(
        self,
        *,
        tags: set[str] | None = None,
        context: dict | None = None,
        intents: dict[str, float] | Callable[[str, list[IntentCandidate]], Detection] | None = None,
        extract: dict[str, Any] | Callable[[str, list[VariableSpec]], dict] | None = None,
        webhook: WebhookOutcome | Callable[[WebhookCall], WebhookOutcome] | None = None,
        ai_text: str | None = "AI answer",
        fail: set[str] | None = None,
        superseded: set[str] | None = None,
    ) -> None:
        self.sent: list[tuple[str, str]] = []
        self.ai_control: list[tuple[bool, str | None]] = []
        self.context: dict[str, Any] = dict(context or {})
        self.resets = 0
        self.statuses: list[str] = []
        self.tags: set[str] = set(tags or ())
        self.tag_log: list[tuple[str, str]] = []
        self.webhook_calls: list[WebhookCall] = []
        self.payloads: list[Any] = []
        self.detect_calls: list[tuple[str, list[IntentCandidate]]] = []
        self.extract_calls: list[tuple[str, list[str]]] = []
        self.asked: list[tuple[PendingAction, str]] = []
        self.pending: dict[str, PendingAction] = {}
        self.pending_status: dict[str, str] = {}
        self.resolutions: list[tuple[str, str, bool]] = []
        self.ai_calls: list[tuple[Turn, AIState]] = []
        self._intents = intents
        self._extract = extract
        self._webhook = webhook or WebhookOutcome(
            status=WebhookStatus.SUCCESS,
            status_code=201,
            response={"order_id": "A-1"},
            duration_ms=3.0,
            attempts=1,
        )
        self._ai_text = ai_text
        self._fail = set(fail or ())
        self._superseded = set(superseded or ())

    def _maybe_fail(self, name: str) -> None:
        if name in self._superseded:
            raise Superseded(f"{name} refused: another turn holds the conversation")
        if name in self._fail:
            raise RuntimeError(f"{name} is down")

    async def send_message(self, text: str, *, message_type: str) -> None:
        self._maybe_fail("send_message")
        self.sent.append((text, message_type))

    async def write_ai_control(self, *, ai_enabled: bool, custom_prompt: str | None) -> None:
        self._maybe_fail("write_ai_control")
        self.ai_control.append((ai_enabled, custom_prompt))

    async def merge_ai_context(self, data: dict) -> dict:
        self._maybe_fail("merge_ai_context")
        self.context.update(data)
        return dict(self.context)

    async def reset_ai_context(self) -> None:
        self._maybe_fail("reset_ai_context")
        self.context = {}
        self.resets += 1

    async def set_conversation_status(self, status: str) -> None:
        self._maybe_fail("set_conversation_status")
        self.statuses.append(status)

    async def add_tag(self, tag: str) -> bool:
        self._maybe_fail("add_tag")
        self.tag_log.append(("add", tag))
        if tag in self.tags:
            return False
        self.tags.add(tag)
        return True

    async def remove_tag(self, tag: str) -> bool:
        self._maybe_fail("remove_tag")
        self.tag_log.append(("remove", tag))
        if tag not in self.tags:
            return False
        self.tags.discard(tag)
        return True

    async def call_webhook(self, call: WebhookCall) -> WebhookOutcome:
        self._maybe_fail("call_webhook")
        self.webhook_calls.append(call)
        warnings: list[str] = []
        self.payloads.append(
            render_tree(call.config.payload_template, call.names, strict=call.strict, warnings=warnings)
        )
        if callable(self._webhook):
            return self._webhook(call)
        return self._webhook

    async def detect_intent(self, text: str, candidates: list[IntentCandidate]) -> Detection:
        self._maybe_fail("detect_intent")
        self.detect_calls.append((text, list(candidates)))
        if callable(self._intents):
            return self._intents(text, candidates)
        scores = []
        for c in candidates:
            if isinstance(self._intents, dict):
                conf = self._intents.get(c.display_name, 0.0)
            else:
                seen = set(words(text))
                conf = max(
                    (
                        len(set(words(e.text)) & seen) / max(1, len(set(words(e.text))))
                        for e in c.training_examples
                    ),
                    default=0.0,
                )
            scores.append(IntentScore(flow_id=c.flow_id, node_id=c.node_id, confidence=conf))
        scores.sort(key=lambda s: -s.confidence)
        best = scores[0] if scores and scores[0].confidence > 0 else None
        return Detection(match=best, top=scores[:3], engine="memory")

    async def extract_variables(self, text: str, variables: list[VariableSpec]) -> Extraction:
        self._maybe_fail("extract_variables")
        names = [v.name for v in variables]
        self.extract_calls.append((text, names))
        found = self._extract(text, variables) if callable(self._extract) else dict(self._extract or {})
        values = {k: v for k, v in found.items() if k in names}
        return Extraction(values=values, missing=[n for n in names if n not in values], engine="memory")

    async def classify_reply(self, text: str) -> str:
        self._maybe_fail("classify_reply")
        seen = set(words(text))
        if seen & APPROVE_WORDS:
            return "approve"
        if seen & REJECT_WORDS:
            return "reject"
        return "unclear"

    async def save_pending(self, pending: PendingAction, *, message: str) -> None:
        self._maybe_fail("save_pending")
        self.pending[pending.id] = pending
        self.pending_status[pending.id] = (
            "awaiting_confirmation" if pending.kind == PendingKind.CONFIRMATION else "pending"
        )
        self.asked.append((pending, message))

    async def resolve_pending(self, pending: PendingAction, status: str) -> bool:
        self._maybe_fail("resolve_pending")
        current = self.pending_status.get(pending.id)
        ok = current is not None and status in TRANSITIONS.get(current, set())
        if ok:
            self.pending_status[pending.id] = status
        self.resolutions.append((pending.id, status, ok))
        return ok

    async def answer_with_ai(self, turn: Turn, ai: AIState) -> AIAnswer:
        self._maybe_fail("answer_with_ai")
        self.ai_calls.append((turn, ai))
        if self._ai_text is None:
            return AIAnswer(
                intent=None, confidence=0.0, text=None, engine="memory", skipped_reason="no answer"
            )
        return AIAnswer(intent="general", confidence=0.7, text=self._ai_text, engine="memory")


_ids = itertools.count(1)


def make_turn(
    text: str | None = "hello",
    *,
    events: list[TurnEvent] | None = None,
    ai: AIState | None = None,
    pending: PendingAction | None = None,
    first_name: str = "Ana",
    tags: list[str] | None = None,
    phone: str = "+15550001111",
) -> Turn:
    """A turn of one message (or none when text is None) from a fixed test contact."""
    messages = (
        [TurnMessage(id=f"m{next(_ids)}", text=text, timestamp=1700000000.0)] if text is not None else []
    )
    return Turn(
        workspace_id="w1",
        conversation=ConversationInfo(id="c1", tags=list(tags or [])),
        contact=ContactInfo(
            id="k1", first_name=first_name, last_name="Diaz", phone=phone, tags=list(tags or [])
        ),
        messages=messages,
        events=list(events or []),
        ai=ai or AIState(),
        pending=pending,
        timestamp=1700000000.0,
        phone_number=phone,
    )


def make_plan(doc: dict | bytes | str, *, flow_id: str | None = None, version: int = 1) -> CompiledFlow:
    """Validate (raising on errors) and compile a document."""
    document = decode_document(doc)
    return compile_flow(document, flow_id=flow_id or document.name, version=version)


def chain(name: str, trigger: dict, *actions: dict, priority: int = 0) -> dict:
    """A linear flow document: trigger config node t, then actions a1..aN (each {"type":..., "config":...})."""
    nodes = [{"id": "t", **trigger}] + [{"id": f"a{i}", **a} for i, a in enumerate(actions, 1)]
    ids = [n["id"] for n in nodes]
    return {
        "name": name,
        "status": "active",
        "priority": priority,
        "nodes": nodes,
        "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(ids)],
    }
