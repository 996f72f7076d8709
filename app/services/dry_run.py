"""The tester's dry run: a message through the real interpreter without touching the world.

A dry run records what would be sent and written, and answers webhooks with a sample
response; with `execute`, webhooks are really called (and logged) so a user can see status,
response and duration. A test conversation lasts several turns: each result carries a
`state` (pending question, AI state, tags, history) that the next request sends back, so
follow-up questions can be answered without a real conversation.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import msgspec
from jinja2 import Environment, TemplateSyntaxError, nodes

from app.http.client import AttemptResult, WebhookClient
from app.http.request import URLTemplateError, mask_secrets, prepare_request
from app.services import flows_store
from app.services.ai.evaluate import OOS_LABELS
from app.services.ai.understanding import Understanding
from app.services.rate_limits import WebhookRateLimiter
from app.services.values import parse_uuid
from app.settings import Settings
from flows.graph import CompiledFlow, compile_flow
from flows.interpreter import run_turn
from flows.nodes.call_webhook import WebhookCall
from flows.runtime import (
    AIAnswer,
    Detection,
    Extraction,
    IntentCandidate,
    WebhookOutcome,
    WebhookStatus,
)
from flows.schema import VariableSpec
from flows.templates import TemplateError, template_strings
from flows.turn import AIState, ContactInfo, ConversationInfo, PendingAction, Turn, TurnMessage

_LOG_TEST_ATTEMPT = """
INSERT INTO external_action_logs (id, workspace, execution, flow_id, node_id, conversation_id, phone, original_message,
    confidence, request, status_code, response_body, status, error, duration_ms, retry_count, test, created_at)
VALUES ($1, $2, NULL, $3, $4, NULL, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, 0, true, clock_timestamp())
"""
HISTORY_ENTRIES = 40  # what a test conversation keeps: enough for the LLM's window and the panel
DRAFT_FLOW_ID = "draft"  # a document tested without a saved flow behind it


class TesterContact(msgspec.Struct, forbid_unknown_fields=True):
    first_name: str = "Test"
    last_name: str = "User"
    phone: str = "+10000000000"
    tags: list[str] = []
    attributes: dict[str, Any] = {}


class HistoryEntry(msgspec.Struct, forbid_unknown_fields=True):
    role: str  # "user" or "assistant"
    text: str


class TesterState(msgspec.Struct, forbid_unknown_fields=True):
    """A test conversation between turns: what a real conversation keeps in the database and Redis."""

    pending: PendingAction | None = None
    ai: AIState = msgspec.field(default_factory=AIState)
    tags: list[str] = []
    status: str = "open"
    history: list[HistoryEntry] = []
    turns: int = 0


class TesterRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/tester/run`."""

    message: str
    language: str | None = None
    contact: TesterContact | None = None
    conversation_id: str | None = None
    execute: bool = False
    flow_id: str | None = None  # also test this flow's draft, published or not
    # Test this document (the editor's canvas, saved or not) in place of the flow's saved draft.
    document: dict[str, Any] | None = None
    ai_enabled: bool = True  # the first turn's AI state; later turns take it from `state`
    custom_prompt: str | None = None
    context: dict[str, Any] = {}
    state: TesterState | None = None  # the previous result's `state`: continue that conversation
    sample_response: Any = None  # a dry run's webhook answer; None = a sample of the fields the flow reads


class ActionScore(msgspec.Struct):
    """One intent action's score for the tested message, against its threshold (best first)."""

    flow_id: str
    node_id: str
    display_name: str
    confidence: float
    """The score the interpreter compares with `threshold` (0-1)."""
    threshold: float
    """The action's `confidence_threshold` from the flow (default 0.8)."""
    passes: bool
    """confidence >= threshold: the action may run (unless another wins or two are too close)."""
    probability: float | None = None
    """The engine's own probability for the action (local: softmax over actions and "none")."""
    learned_cut: float | None = None
    """The probability the local engine learned this action must reach; it sits at confidence 0.8."""


class TesterResponse(msgspec.Struct):
    layer: str | None
    engine: str | None
    match: dict[str, Any] | None
    top: list[dict[str, Any]]
    vars: dict[str, Any]
    webhook: dict[str, Any] | None
    messages: list[dict[str, Any]]
    ai: dict[str, Any]
    pending: dict[str, Any] | None
    answer: dict[str, Any] | None
    trace: list[dict[str, Any]]
    warnings: list[str]
    executed: bool
    duration_ms: float
    state: TesterState
    # Names of the flows whose message triggers fired: two or more answer the same message.
    answered_by: list[str] = []
    scores: list[ActionScore] = []
    """Every intent action's score against its threshold, best first (`top` keeps the first five)."""
    none_probability: float | None = None
    """The engine's probability that the message fits none of the actions, when it gives one."""


class DryRunRuntime:
    """Implements flows.runtime.Runtime in memory; understanding is real, effects are recorded."""

    def __init__(
        self,
        tester: Tester,
        workspace_id: str,
        *,
        execute: bool,
        ai: AIState,
        tags: list[str],
        plans: list[CompiledFlow],
        sample_response: Any = None,
        history: list[dict[str, str]] | None = None,
    ) -> None:
        self.tester = tester
        self.workspace_id = workspace_id
        self.execute = execute
        self.messages: list[dict[str, Any]] = []
        self.ai = ai
        self.tags = list(tags)
        self.status: str | None = None
        self.webhook: dict[str, Any] | None = None
        self.pending: dict[str, Any] | None = None
        self.saved_pending: PendingAction | None = None
        self.resolved = False
        self.plans = {p.flow_id: p for p in plans}
        self.sample_response = sample_response
        self.history = history or []

    async def send_message(self, text: str, *, message_type: str) -> None:
        self.messages.append({"text": text, "message_type": message_type})

    async def write_ai_control(self, *, ai_enabled: bool, custom_prompt: str | None) -> None:
        self.ai = AIState(ai_enabled=ai_enabled, custom_prompt=custom_prompt, context=self.ai.context)

    async def merge_ai_context(self, data: dict) -> dict:
        merged = {**self.ai.context, **data}
        self.ai = AIState(ai_enabled=self.ai.ai_enabled, custom_prompt=self.ai.custom_prompt, context=merged)
        return merged

    async def reset_ai_context(self) -> None:
        self.ai = AIState(ai_enabled=self.ai.ai_enabled, custom_prompt=self.ai.custom_prompt, context={})

    async def set_conversation_status(self, status: str) -> None:
        self.status = status

    async def add_tag(self, tag: str) -> bool:
        if tag in self.tags:
            return False
        self.tags.append(tag)
        return True

    async def remove_tag(self, tag: str) -> bool:
        if tag not in self.tags:
            return False
        self.tags.remove(tag)
        return True

    async def call_webhook(self, call: WebhookCall) -> WebhookOutcome:
        config = call.config
        secret = await flows_store.resolve_secret(self.workspace_id, config.auth.secret)
        try:
            prepared = prepare_request(
                url_template=config.url,
                names=call.names,
                idempotency_key="tester-" + uuid.uuid4().hex,
                method=config.method,
                headers_template=config.headers,
                payload_template=config.payload_template,
                auth_type=config.auth.type,
                secret=secret or ("(not set)" if config.auth.type != "none" else ""),
                header_name=config.auth.header_name,
                timeout_seconds=config.timeout_seconds,
                strict=True,
            )
        except (URLTemplateError, TemplateError, ValueError) as exc:
            self.webhook = {"flow_id": call.flow_id, "node_id": call.node_id, "error": str(exc)}
            return WebhookOutcome(status=WebhookStatus.FAILURE, error=str(exc))
        request = prepared.request
        self.webhook = {
            "flow_id": call.flow_id,
            "node_id": call.node_id,
            "method": request.method.value,
            "url": request.url,
            "headers": mask_secrets(request.headers, request.secret_values),
            "payload": mask_secrets(request.json_body, request.secret_values),
            "warnings": prepared.warnings,
            "executed": False,
        }
        if not self.execute:
            sample = self.sample_response
            if sample is None:
                plan = self.plans.get(call.flow_id)
                sample = sample_response(plan.inputs.values() if plan else [call.config])
            self.webhook.update(response=sample, sample=True)
            return WebhookOutcome(status=WebhookStatus.SUCCESS, response=sample, attempts=0)
        # A real call counts like any execution: against the workspace's rate limit, and in the log.
        if not await self.tester.rate_limiter.allow(self.workspace_id):
            refusal = self.tester.rate_limiter.refusal()
            self.webhook.update(error=refusal)
            return WebhookOutcome(status=WebhookStatus.FAILURE, error=refusal)
        result = await self.tester.webhook_client.attempt(
            request,
            allow_private=self.tester.settings.webhooks.allow_private,
            max_response_bytes=self.tester.settings.webhooks.max_response_bytes,
        )
        await self.tester.log_attempt(self.workspace_id, call, result)
        self.webhook.update(
            executed=True,
            status=result.status.value,
            status_code=result.status_code,
            response=result.response,
            duration_ms=round(result.duration_ms, 2),
            error=result.error,
        )
        return WebhookOutcome(
            status=WebhookStatus.SUCCESS if result.succeeded else WebhookStatus.FAILURE,
            status_code=result.status_code,
            response=result.response,
            error=result.error,
            duration_ms=result.duration_ms,
            attempts=1,
        )

    async def detect_intent(self, text: str, candidates: list[IntentCandidate]) -> Detection:
        # Every action's score, not only the best five: the tester shows each against its threshold.
        return await self.tester.understanding.detect_intent(
            self.workspace_id, text, candidates, top_k=len(candidates)
        )

    async def extract_variables(self, text: str, variables: list[VariableSpec]) -> Extraction:
        return await self.tester.understanding.extract_variables(self.workspace_id, text, variables)

    async def classify_reply(self, text: str) -> str:
        return await self.tester.understanding.classify_reply(self.workspace_id, text)

    async def save_pending(self, pending: PendingAction, *, message: str) -> None:
        self.pending = {**msgspec.to_builtins(pending), "message": message}
        self.saved_pending = pending
        if message:
            await self.send_message(message, message_type="support")

    async def resolve_pending(self, pending: PendingAction, status: str) -> bool:
        self.resolved = True
        return True

    async def answer_with_ai(self, turn: Turn, ai: AIState) -> AIAnswer:
        history = [*self.history, {"role": "user", "text": turn.text}]
        return await self.tester.understanding.answer(
            self.workspace_id, turn, ai, history=history, offline=not self.execute
        )


_PARSER = Environment()  # parses only (the sandbox renders): finds the `response` fields a template reads


def _response_path(node: nodes.Node) -> list[str | int] | None:
    """`response.a.b[0]` -> ["a", "b", 0]; None when the expression does not start at `response`."""
    path: list[str | int] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            path.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, (str, int)):
            path.append(node.arg.value)
        else:
            path.clear()  # response[some_expression]: only the part before it is known
        node = node.node
    if isinstance(node, nodes.Name) and node.name == "response":
        return list(reversed(path))
    return None


def _place(target: Any, path: list[str | int], label: str) -> Any:
    """Put a placeholder at `path` inside `target` (dicts for names, lists for indexes)."""
    if not path:
        return target if isinstance(target, (dict, list)) else f"[{label}]"
    key, rest = path[0], path[1:]
    if isinstance(key, int):
        items = target if isinstance(target, list) else []
        while len(items) <= key:
            items.append(None)
        items[key] = _place(items[key], rest, label)
        return items
    mapping = target if isinstance(target, dict) else {}
    mapping[key] = _place(mapping.get(key), rest, label)
    return mapping


def sample_response(configs: Any) -> Any:
    """A made-up webhook answer holding every `response.*` field the given node configs read.

    A dry run sends nothing, so "Order {{ response.order_id }} created!" gets
    {"order_id": "[order_id]"} and renders "Order [order_id] created!" instead of failing.
    """
    sample: Any = {}
    for config in configs:
        for text in template_strings(msgspec.to_builtins(config)):
            try:
                tree = _PARSER.parse(text)
            except TemplateSyntaxError:
                continue  # validation reports it; the run's trace will too
            calls = {id(c.node) for c in tree.find_all(nodes.Call)}
            for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
                path = _response_path(node)
                if path is None:
                    continue
                if id(node) in calls:
                    path = path[:-1]  # response.get(...) is a method call, not a field
                sample = _place(sample, path, ".".join(str(p) for p in path))
    return sample


class Tester:
    """Runs dry runs for the tester page and `POST /api/tester/run`; one per process."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: asyncpg.Pool,
        plans: flows_store.PlanCache,
        understanding: Understanding,
        webhook_client: WebhookClient,
        rate_limiter: WebhookRateLimiter,
    ) -> None:
        self.settings = settings
        self.db = db
        self.plans = plans
        self.understanding = understanding
        self.webhook_client = webhook_client
        self.rate_limiter = rate_limiter

    async def log_attempt(self, workspace_id: str, call: WebhookCall, result: AttemptResult) -> None:
        """A real call from the tester in the action's log, marked `test` (no counters: it is no customer's)."""
        flow_id = parse_uuid(call.flow_id)
        if flow_id is None:  # a document tested before it was ever saved has no action log to be in
            return
        names = call.names
        await self.db.execute(
            _LOG_TEST_ATTEMPT,
            uuid.uuid4(),
            uuid.UUID(workspace_id),
            flow_id,
            call.node_id,
            str(names.get("phone_number") or "")[:64],
            str(names.get("message_text") or ""),
            call.confidence,
            msgspec.json.encode(result.payload_masked).decode(),
            result.status_code,
            result.response_text,
            result.status.value,
            result.error,
            result.duration_ms,
        )

    async def run(self, workspace_id: str, request: TesterRequest) -> TesterResponse:
        return await _run_test(self, workspace_id, request)

    async def run_batch(
        self, workspace_id: str, filename: str, raw: bytes, *, flow_id: str | None
    ) -> BatchReport:
        return await _run_batch(self, workspace_id, filename, raw, flow_id=flow_id)


async def _plans(tester: Tester, workspace_id: str, request: TesterRequest) -> list[CompiledFlow]:
    """The active flows; the tested flow's draft (or the given document) replaces its published version."""
    plans = list(await tester.plans.active_plans(workspace_id))
    if not (request.flow_id or request.document is not None):
        return plans
    flow_id, version, raw = request.flow_id or DRAFT_FLOW_ID, 1, request.document
    if request.flow_id:
        flow = await flows_store.get_flow(workspace_id, request.flow_id)
        version = flow.latest_version + 1
        raw = flow.document if raw is None else raw
    doc = flows_store.parse_document(raw or {})
    return [p for p in plans if p.flow_id != flow_id] + [compile_flow(doc, flow_id=flow_id, version=version)]


def _next_pending(runtime: DryRunRuntime, before: PendingAction | None) -> PendingAction | None:
    """A question asked this turn; else the earlier one, unless this turn settled it."""
    if runtime.saved_pending is not None:
        return runtime.saved_pending
    return None if runtime.resolved else before


async def _run_test(tester: Tester, workspace_id: str, request: TesterRequest) -> TesterResponse:
    if not request.message.strip():
        raise ValueError("message: type the message to test")
    plans = await _plans(tester, workspace_id, request)
    contact = request.contact or TesterContact()
    state = request.state or TesterState(
        ai=AIState(
            ai_enabled=request.ai_enabled, custom_prompt=request.custom_prompt, context=dict(request.context)
        )
    )
    ai = state.ai
    turn = Turn(
        workspace_id=workspace_id,
        conversation=ConversationInfo(
            id=request.conversation_id or "tester", status=state.status, tags=list(state.tags)
        ),
        contact=ContactInfo(
            id="tester",
            first_name=contact.first_name,
            last_name=contact.last_name,
            phone=contact.phone,
            tags=list(contact.tags),
            attributes=dict(contact.attributes),
        ),
        messages=[TurnMessage(id="tester", text=request.message, timestamp=time.time())],
        ai=ai,
        pending=state.pending,
        timestamp=time.time(),
        phone_number=contact.phone,
    )
    runtime = DryRunRuntime(
        tester,
        workspace_id,
        execute=request.execute,
        ai=ai,
        tags=state.tags,
        plans=plans,
        sample_response=request.sample_response,
        history=[msgspec.to_builtins(h) for h in state.history],
    )
    started = time.perf_counter()
    result = await run_turn(
        plans,
        turn,
        runtime,
        strict=True,
        auto_execute_threshold=tester.settings.ai.auto_execute_threshold,
        ambiguity_margin=tester.settings.ai.ambiguity_margin,
    )
    duration_ms = (time.perf_counter() - started) * 1000
    names = {(c.flow_id, c.node_id): c.display_name for p in plans for c in p.intents}
    thresholds = {(c.flow_id, c.node_id): c.confidence_threshold for p in plans for c in p.intents}
    flow_names = {p.flow_id: p.name for p in plans}
    answered_by = [flow_names[f] for f in result.message_flows]
    warnings = list(result.warnings)
    if len(answered_by) > 1:
        warnings.insert(
            0, f"This message would be answered {len(answered_by)} times, by {' and '.join(answered_by)}."
        )
    detection = result.detection
    match = None
    if detection and detection.match:
        m = detection.match
        match = {
            "flow_id": m.flow_id,
            "node_id": m.node_id,
            "confidence": m.confidence,
            "display_name": names.get((m.flow_id, m.node_id), m.node_id),
        }
    top = [
        {
            "flow_id": s.flow_id,
            "node_id": s.node_id,
            "confidence": s.confidence,
            "display_name": names.get((s.flow_id, s.node_id), s.node_id),
        }
        for s in (detection.top[:5] if detection else [])
    ]
    scores = [
        ActionScore(
            flow_id=s.flow_id,
            node_id=s.node_id,
            display_name=names.get((s.flow_id, s.node_id), s.node_id),
            confidence=s.confidence,
            threshold=thresholds.get((s.flow_id, s.node_id), 0.8),
            passes=s.confidence >= thresholds.get((s.flow_id, s.node_id), 0.8),
            probability=s.probability,
            learned_cut=s.learned_cut,
        )
        for s in (detection.top if detection else [])
    ]
    history = [
        *state.history,
        HistoryEntry(role="user", text=request.message),
        *(HistoryEntry(role="assistant", text=m["text"]) for m in runtime.messages),
    ][-HISTORY_ENTRIES:]
    next_state = TesterState(
        pending=_next_pending(runtime, state.pending),
        ai=runtime.ai,
        tags=list(runtime.tags),
        status=runtime.status or state.status,
        history=history,
        turns=state.turns + 1,
    )
    return TesterResponse(
        layer=result.layer.value if result.layer else None,
        engine=(detection.engine if detection else None) or (result.answer.engine if result.answer else None),
        match=match,
        top=top,
        vars=msgspec.to_builtins(result.vars),
        webhook=runtime.webhook,
        messages=runtime.messages,
        ai=msgspec.to_builtins(runtime.ai),
        pending=runtime.pending,
        answer=msgspec.to_builtins(result.answer) if result.answer else None,
        trace=msgspec.to_builtins(result.trace),
        warnings=warnings,
        executed=request.execute,
        duration_ms=round(duration_ms, 2),
        state=next_state,
        answered_by=answered_by,
        scores=scores,
        none_probability=detection.none_probability if detection else None,
    )


MAX_BATCH_ROWS = 500
NO_MATCH = "(none)"


class BatchRow(msgspec.Struct, frozen=True):
    message: str
    language: str
    expected: str


class BatchResult(msgspec.Struct, frozen=True):
    message: str
    expected: str
    predicted: str
    confidence: float | None


class BatchReport(msgspec.Struct, kw_only=True):
    """A batch test: what answered each message, accuracy, and the confusion counts (expected, predicted)."""

    results: list[BatchResult] = []
    labels: list[str] = []
    confusion: dict[tuple[str, str], int] = {}
    total: int = 0
    accuracy: float | None = None
    error: str | None = None


def predicted_label(result: TesterResponse) -> str:
    """What answered, in the words a batch file uses: the action's name, the core intent, or (none)."""
    if result.layer == "external_action" and result.match:
        return str(result.match.get("display_name") or result.match.get("node_id"))
    if result.layer == "core_intent" and result.answer and result.answer.get("intent"):
        return str(result.answer["intent"])
    if result.layer == "trigger":
        return "trigger"
    return NO_MATCH


def parse_batch(filename: str, raw: bytes) -> list[BatchRow]:
    """Rows from CSV (header: message/text, expected/intent, language) or JSON lines.

    An expected label that eval-intents reads as "matches nothing" (oos, none, empty) is (none).
    """
    text = raw.decode("utf-8-sig")
    rows: list[dict[str, Any]]
    if filename.endswith((".jsonl", ".json")) or text.lstrip().startswith("{"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for row in rows[:MAX_BATCH_ROWS]:
        message = str(row.get("message") or row.get("text") or "").strip()
        expected = str(row.get("expected", row.get("intent")) or "").strip()
        if message:
            label = NO_MATCH if expected.lower() in OOS_LABELS else expected
            out.append(BatchRow(message, str(row.get("language") or ""), label))
    return out


async def _run_batch(
    tester: Tester, workspace_id: str, filename: str, raw: bytes, *, flow_id: str | None
) -> BatchReport:
    """Every row through the tester (dry run), with accuracy and the confusion counts."""
    try:
        rows = parse_batch(filename, raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return BatchReport(error=f"Could not read {filename}: {exc}.")
    if not rows:
        return BatchReport(
            error=f"{filename} has no rows with a message (columns: message, expected, language)."
        )
    results = []
    for row in rows:
        res = await _run_test(
            tester,
            workspace_id,
            TesterRequest(message=row.message, language=row.language or None, flow_id=flow_id),
        )
        results.append(
            BatchResult(
                message=row.message,
                expected=row.expected,
                predicted=predicted_label(res),
                confidence=(res.match or {}).get("confidence"),
            )
        )
    correct = sum(1 for r in results if r.expected == r.predicted)
    return BatchReport(
        results=results,
        labels=sorted({r.expected for r in results} | {r.predicted for r in results}),
        confusion=dict(Counter((r.expected, r.predicted) for r in results)),
        total=len(results),
        accuracy=correct / len(results),
    )
