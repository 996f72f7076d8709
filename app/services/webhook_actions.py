"""call_webhook executions: first attempt inline, retries as scheduled SAQ jobs, logs and counters.

One execution = one row in `action_executions` with a stable idempotency key; every HTTP
attempt is a row in `external_action_logs`; `action_stats` counts final outcomes. A
retryable failure returns `scheduled` to the interpreter (the branch halts), and the
retry job resumes the flow after the success or failure port when the execution ends.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from saq import Queue

from app.db import engine
from app.services import flows_store, redis_conn
from app.services.outbound import Outbox
from app.services.webhooks import (
    AttemptResult,
    URLTemplateError,
    WebhookClient,
    WebhookRequest,
    apply_auth,
    backoff_seconds,
    prepare_request,
)
from app.settings import Settings
from flows.ports import WebhookCall, WebhookOutcome, WebhookStatus
from flows.templates import TemplateError

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()

RETRY_JOB = "retry_webhook"
MAX_LOG_BODY_CHARS = 16 * 1024


class ExecutionStatus:
    """`action_executions.status` values used by webhook executions (DESIGN "External action runs")."""

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class StoredRequest(msgspec.Struct):
    """What a retry needs to send the same request again; the secret stays a reference."""

    url: str
    method: str
    headers: dict[str, str]
    json_body: Any
    timeout_seconds: float
    auth_type: str
    auth_secret_ref: str
    auth_header_name: str
    max_retries: int
    retry_delay_seconds: float


ResumeHook = Callable[[str, WebhookOutcome], Awaitable[None]]


class WebhookActions:
    """One per process; owns the pooled webhook HTTP client."""

    def __init__(self, settings: Settings, *, queue: Queue, outbox: Outbox) -> None:
        self.settings = settings
        self.queue = queue
        self.outbox = outbox
        self.client = WebhookClient(retry_after_cap_seconds=settings.webhooks.retry_after_cap_seconds)
        self.rng = random.Random()
        self.resume: ResumeHook | None = None  # continues the flow after a retried execution ends

    async def aclose(self) -> None:
        await self.client.aclose()

    def job_functions(self) -> list:
        return [retry_webhook]

    # --- the interpreter's port --------------------------------------------------------
    async def execute(self, call: WebhookCall, *, scope: Any) -> WebhookOutcome:
        execution_id = uuid.uuid4()
        config = call.config
        if not await self._within_rate_limit(scope.workspace_id):
            limit = self.settings.webhooks.rate_limit_per_minute
            return WebhookOutcome(status=WebhookStatus.FAILURE, error=(
                f"webhook rate limit reached ({limit} per minute for this workspace); raise "
                "SWITCHBOARD_WEBHOOK_RATE_LIMIT_PER_MINUTE or slow the traffic down"))
        secret = await flows_store.resolve_secret(scope.workspace_id, config.auth.secret)
        if config.auth.type != "none" and not secret:
            return WebhookOutcome(status=WebhookStatus.FAILURE, error=(
                f"the {config.auth.type} secret of node {call.node_id} is not set in this workspace; "
                "enter it again in the action's auth settings"))
        try:
            prepared = prepare_request(
                url_template=config.url, names=call.names, idempotency_key=execution_id.hex, method=config.method,
                headers_template=config.headers, payload_template=config.payload_template,
                auth_type=config.auth.type, secret=secret, header_name=config.auth.header_name,
                timeout_seconds=config.timeout_seconds, strict=call.strict)
        except (URLTemplateError, TemplateError, ValueError) as exc:
            return WebhookOutcome(status=WebhookStatus.FAILURE, error=f"the request could not be built: {exc}")
        request = prepared.request
        stored = StoredRequest(
            url=request.url, method=request.method.value, json_body=request.json_body,
            headers={k: v for k, v in request.headers.items() if secret == "" or secret not in v},
            timeout_seconds=request.timeout_seconds, auth_type=config.auth.type,
            auth_secret_ref=config.auth.secret, auth_header_name=config.auth.header_name,
            max_retries=config.max_retries, retry_delay_seconds=config.retry_delay_seconds)
        await engine.pool().execute(
            """
            INSERT INTO action_executions (id, workspace, flow_id, flow_version, node_id, webhook_node_id,
                conversation, run_id, status, kind, vars, missing, asked_count, confidence, original_message,
                phone, idempotency_key, attempts, state, dead_letter, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $5, $6, $7, 'processing', 'webhook', $8::jsonb, '[]'::jsonb, 0, $9, $10,
                    $11, $12, 0, $13::jsonb, false, now(), now())
            """,
            execution_id, uuid.UUID(scope.workspace_id), uuid.UUID(call.flow_id),
            _flow_version(scope, call.flow_id), call.node_id,
            uuid.UUID(scope.conversation_id) if scope.conversation_id else None,
            uuid.UUID(scope.run_id) if scope.run_id else None, _json.encode(call.vars).decode(), call.confidence,
            scope.original_message, scope.contact_phone, execution_id.hex,
            _json.encode({"request": stored, "names": call.names, "vars": call.vars}).decode(),
        )
        return await self._attempt(str(execution_id), request, stored, scope.workspace_id, attempt=1)

    # --- attempts ------------------------------------------------------------------------
    async def _attempt(self, execution_id: str, request: WebhookRequest, stored: StoredRequest, workspace_id: str,
                       *, attempt: int) -> WebhookOutcome:
        result = await self.client.attempt(request, allow_private=self.settings.webhooks.allow_private,
                                           max_response_bytes=self.settings.webhooks.max_response_bytes)
        await self._log_attempt(execution_id, workspace_id, result, retry_count=attempt - 1)
        outcome = WebhookOutcome(
            status=WebhookStatus.SUCCESS if result.succeeded else WebhookStatus.FAILURE,
            status_code=result.status_code, response=result.response, error=result.error,
            duration_ms=round(result.duration_ms, 2), attempts=attempt)
        if not result.succeeded and result.retryable and attempt <= stored.max_retries:
            delay_s = backoff_seconds(attempt, base_s=stored.retry_delay_seconds,
                                      retry_after_s=result.retry_after_seconds,
                                      cap_s=self.settings.webhooks.retry_after_cap_seconds, rng=self.rng)
            # Recorded before the job exists: a job that runs at once must find this attempt counted.
            await engine.pool().execute(
                "UPDATE action_executions SET attempts = $2, last_error = $3, updated_at = now() WHERE id = $1",
                uuid.UUID(execution_id), attempt, result.error)
            # SAQ schedules in whole seconds; rounding up keeps a Retry-After from being undercut.
            await self.queue.enqueue(
                RETRY_JOB, execution_id=execution_id, attempt=attempt + 1, key=f"webhook:{execution_id}:{attempt + 1}",
                scheduled=math.ceil(time.time() + delay_s), timeout=int(stored.timeout_seconds * 2 + 30), retries=2,
            )
            log.info("webhook retry scheduled", extra={"execution_id": execution_id, "attempt": attempt,
                                                       "delay_s": round(delay_s, 3)})
            return WebhookOutcome(status=WebhookStatus.SCHEDULED, status_code=result.status_code,
                                  error=result.error, duration_ms=outcome.duration_ms, attempts=attempt)
        await self._finish(execution_id, workspace_id, outcome)
        return outcome

    async def retry(self, execution_id: str, attempt: int) -> WebhookOutcome | None:
        """The scheduled retry: attempt again unless the execution already ended."""
        row = await engine.pool().fetchrow(
            "SELECT workspace, status, attempts, idempotency_key, state FROM action_executions WHERE id = $1",
            uuid.UUID(execution_id))
        if row is None or row["status"] != ExecutionStatus.PROCESSING or row["attempts"] != attempt - 1:
            return None  # ended, replayed or a duplicate job: nothing to do
        state = msgspec.json.decode(row["state"]) if isinstance(row["state"], str) else row["state"]
        stored = msgspec.convert(state["request"], StoredRequest)
        workspace_id = str(row["workspace"])
        secret = await flows_store.resolve_secret(workspace_id, stored.auth_secret_ref)
        headers = apply_auth(stored.headers, auth_type=stored.auth_type, secret=secret,
                             header_name=stored.auth_header_name) if stored.auth_type != "none" else stored.headers
        request = WebhookRequest(url=stored.url, method=stored.method, headers=headers, json_body=stored.json_body,
                                 timeout_seconds=stored.timeout_seconds, idempotency_key=row["idempotency_key"],
                                 secret_values=[secret] if secret else [])
        outcome = await self._attempt(execution_id, request, stored, workspace_id, attempt=attempt)
        if outcome.status is not WebhookStatus.SCHEDULED and self.resume is not None:
            await self.resume(execution_id, outcome)
        return outcome

    async def _finish(self, execution_id: str, workspace_id: str, outcome: WebhookOutcome) -> None:
        ok = outcome.status is WebhookStatus.SUCCESS
        pool = engine.pool()
        row = await pool.fetchrow(
            "UPDATE action_executions SET status = $2, attempts = $3, last_error = $4, dead_letter = $5, "
            "updated_at = now() WHERE id = $1 AND status = 'processing' RETURNING flow_id, node_id",
            uuid.UUID(execution_id), ExecutionStatus.COMPLETED if ok else ExecutionStatus.FAILED,
            outcome.attempts, outcome.error, not ok)
        if row is None:
            return
        # One statement, so concurrent executions of an action never lose a count.
        await pool.execute(
            """
            INSERT INTO action_stats (id, workspace, flow_id, node_id, executions, successes, failures,
                                      total_duration_ms, last_executed_at)
            VALUES ($1, $2, $3, $4, 1, $5, $6, $7, now())
            ON CONFLICT (workspace, flow_id, node_id) DO UPDATE SET
              executions = action_stats.executions + 1,
              successes = action_stats.successes + EXCLUDED.successes,
              failures = action_stats.failures + EXCLUDED.failures,
              total_duration_ms = action_stats.total_duration_ms + EXCLUDED.total_duration_ms,
              last_executed_at = now()
            """,
            uuid.uuid4(), uuid.UUID(workspace_id), row["flow_id"], row["node_id"], int(ok), int(not ok),
            outcome.duration_ms)

    async def _log_attempt(self, execution_id: str, workspace_id: str, result: AttemptResult, *,
                           retry_count: int) -> None:
        await engine.pool().execute(
            """
            INSERT INTO external_action_logs (id, workspace, execution, flow_id, node_id, conversation_id, phone,
                original_message, confidence, request, status_code, response_body, status, error, duration_ms,
                retry_count, created_at)
            SELECT $1, e.workspace, e.id, e.flow_id, e.node_id, e.conversation, e.phone, e.original_message,
                   e.confidence, $3::jsonb, $4, $5, $6, $7, $8, $9, now()
              FROM action_executions e WHERE e.id = $2
            """,
            uuid.uuid4(), uuid.UUID(execution_id), _json.encode(result.payload_masked).decode(), result.status_code,
            result.response_text[:MAX_LOG_BODY_CHARS], result.status.value, result.error, result.duration_ms,
            retry_count)

    async def _within_rate_limit(self, workspace_id: str) -> bool:
        minute = int(time.time() // 60)
        key = f"sb:rl:webhooks:{workspace_id}:{minute}"
        count, _ = await redis_conn.client().pipeline(transaction=False).incr(key).expire(key, 120).execute()
        return count <= self.settings.webhooks.rate_limit_per_minute

    # --- dead letters --------------------------------------------------------------------
    async def replay(self, workspace_id: str, execution_id: str) -> WebhookOutcome:
        """Send a failed execution's request again (a new attempt series, same idempotency key)."""
        try:
            execution_uuid = uuid.UUID(execution_id)
        except ValueError:
            raise LookupError(f"{execution_id!r} is not an execution id") from None
        # Compare-and-set: two replays of one dead letter send it once.
        row = await engine.pool().fetchrow(
            "UPDATE action_executions SET status = 'processing', dead_letter = false, attempts = 0, "
            "updated_at = now() WHERE id = $1 AND workspace = $2 AND status = 'failed' AND kind = 'webhook' "
            "RETURNING id",
            execution_uuid, uuid.UUID(workspace_id))
        if row is None:
            raise LookupError(f"no failed webhook execution {execution_id} in this workspace")
        return await self.retry(execution_id, 1)


def _flow_version(scope: Any, flow_id: str) -> int:
    return scope.flow_versions.get(flow_id, 0)


async def retry_webhook(ctx: dict[str, Any], *, execution_id: str, attempt: int) -> dict[str, Any]:
    """SAQ job: one scheduled retry of a webhook execution."""
    from app.services import lifecycle

    outcome = await lifecycle.services().webhooks.retry(execution_id, attempt)
    if outcome is None:
        return {"status": "skipped"}
    return {"status": outcome.status.value, "attempts": outcome.attempts}
