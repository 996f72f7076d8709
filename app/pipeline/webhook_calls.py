"""Step 7b, webhook calls: call_webhook executions, first attempt inline, retries as SAQ jobs.

Comes from: the turn's effects (app.pipeline.effects, `call_webhook`), and the retry job
and dead-letter replay, which app.pipeline.turn continues after the execution ends.
Goes to: the customer's endpoint through app.http (guarded, one attempt per call), and
the execution's rows in PostgreSQL.

One execution = one row in `action_executions` with a stable idempotency key; every HTTP
attempt is a row in `external_action_logs`; `action_stats` counts final outcomes. A
retryable failure returns `scheduled` to the interpreter (the branch halts); when a
retried execution ends, the turn (app.pipeline.turn) resumes the flow after its success
or failure port.

Database statements per execution: one insert before the call (so an in-flight call is
visible and a retry can find its request), and one statement after the last attempt that
writes the log row, moves the execution and bumps the counters together. Both are shared by
the executions of concurrent turns (group commit, app.services.coalesce): a worker running
a hundred turns pays one insert and one end for all of them, and the counters' row is
updated once per group instead of once per execution (every execution of a busy action
would otherwise queue on that one row's lock). An attempt that schedules a retry writes
its own statement (rare: only failures take that path).
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from typing import Any

import asyncpg
import msgspec
from redis.asyncio import Redis
from saq import Queue

from app.http.client import AttemptResult, WebhookClient
from app.http.request import HttpMethod, URLTemplateError, WebhookRequest, apply_auth, prepare_request
from app.http.retry import AttemptStatus, backoff_seconds
from app.pipeline.ledger import refuse_unless_held
from app.services import flows_store
from app.services.coalesce import Coalescer
from app.services.rate_limits import WebhookRateLimiter
from app.settings import Settings
from flows.nodes.call_webhook import WebhookCall
from flows.runtime import ActionRunStatus, WebhookOutcome, WebhookStatus
from flows.templates import TemplateError

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()

RETRY_JOB = "retry_webhook"
MAX_LOG_BODY_CHARS = 16 * 1024


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


class Execution(msgspec.Struct, frozen=True, kw_only=True):
    """The identity of one execution, copied onto each of its log rows."""

    id: uuid.UUID
    workspace: uuid.UUID
    flow_id: uuid.UUID
    node_id: str
    conversation: uuid.UUID | None
    phone: str
    original_message: str
    confidence: float | None


# The executions of concurrent turns, inserted together (parameters: one array per column).
_INSERT_EXECUTIONS = """
INSERT INTO action_executions (id, workspace, flow_id, flow_version, node_id, webhook_node_id, conversation, run_id,
    status, kind, vars, missing, asked_count, confidence, original_message, phone, idempotency_key, attempts, state,
    dead_letter, created_at, updated_at)
SELECT u.id, u.workspace, u.flow_id, u.flow_version, u.node_id, u.node_id, u.conversation, u.run_id, 'processing',
       'webhook', u.vars, '[]'::jsonb, 0, u.confidence, u.original_message, u.phone, u.idempotency_key, 0, u.state,
       false, now(), now()
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::text[], $6::uuid[], $7::uuid[], $8::jsonb[],
              $9::float8[], $10::text[], $11::text[], $12::text[], $13::jsonb[], $14::bigint[])
       AS u(id, workspace, flow_id, flow_version, node_id, conversation, run_id, vars, confidence, original_message,
            phone, idempotency_key, state, epoch)
 -- Each turn's fencing token (app.pipeline.ledger): a turn another turn took over calls nothing.
 WHERE u.epoch IS NULL OR u.epoch = (SELECT lease_epoch FROM conversations WHERE id = u.conversation)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""
# What an earlier try of the same batch left behind (a worker died and the batch runs again).
_EARLIER = """
SELECT e.status, e.attempts, l.status_code, l.response_body, l.error, l.duration_ms
  FROM action_executions e
  LEFT JOIN LATERAL (SELECT status_code, response_body, error, duration_ms FROM external_action_logs
                      WHERE execution = e.id ORDER BY created_at DESC LIMIT 1) l ON true
 WHERE e.id = $1
"""
# Executions of one batch get the same id (and so the same Idempotency-Key) every time the batch runs.
_EXECUTION_NAMESPACE = uuid.UUID("5b0b1d2e-8f7a-4c1e-9b7d-3f2a1c0d9e8f")
_LOG = """
INSERT INTO external_action_logs (id, workspace, execution, flow_id, node_id, conversation_id, phone,
    original_message, confidence, request, status_code, response_body, status, error, duration_ms, retry_count,
    created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15, $16, clock_timestamp())
"""
# The attempt's log row and the move to "retry later", in one round trip.
_LOG_AND_RETRY = f"""
WITH logged AS ({_LOG})
UPDATE action_executions SET attempts = $17, last_error = $14, updated_at = now() WHERE id = $3
"""
# The last attempts of many executions: their log rows, the compare-and-set of each to its final
# status, and the counters, in one statement. Concurrent executions never lose a count, and a
# duplicate end never counts twice (only the executions this statement moved are counted, each
# once). Counter rows are written in key order, so concurrent groups never deadlock on them.
_LOG_AND_FINISH_MANY = """
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::uuid[], $7::text[],
                       $8::text[], $9::float8[], $10::jsonb[], $11::int[], $12::text[], $13::text[], $14::text[],
                       $15::float8[], $16::int[], $17::text[], $18::int[], $19::bool[])
    AS i(log_id, workspace, execution, flow_id, node_id, conversation_id, phone, original_message, confidence,
         request, status_code, response_body, status, error, duration_ms, retry_count, final_status, attempts,
         dead_letter)
), logged AS (
  INSERT INTO external_action_logs (id, workspace, execution, flow_id, node_id, conversation_id, phone,
      original_message, confidence, request, status_code, response_body, status, error, duration_ms, retry_count,
      created_at)
  SELECT log_id, workspace, execution, flow_id, node_id, conversation_id, phone, original_message, confidence,
         request, status_code, response_body, status, error, duration_ms, retry_count, clock_timestamp()
    FROM input
), ended AS (
  UPDATE action_executions e SET status = i.final_status, attempts = i.attempts, last_error = i.error,
                                 dead_letter = i.dead_letter, updated_at = now()
    FROM input i
   WHERE e.id = ANY($3::uuid[]) AND e.id = i.execution AND e.status = 'processing'
  RETURNING e.id
), counted AS (
  SELECT DISTINCT ON (i.execution) i.workspace, i.flow_id, i.node_id, i.final_status, i.duration_ms
    FROM input i JOIN ended ON ended.id = i.execution
)
INSERT INTO action_stats (id, workspace, flow_id, node_id, executions, successes, failures, total_duration_ms,
                          last_executed_at)
SELECT gen_random_uuid(), workspace, flow_id, node_id, count(*), count(*) FILTER (WHERE final_status = 'completed'),
       count(*) FILTER (WHERE final_status <> 'completed'), sum(duration_ms), now()
  FROM counted GROUP BY workspace, flow_id, node_id ORDER BY workspace, flow_id, node_id
ON CONFLICT (workspace, flow_id, node_id) DO UPDATE SET
  executions = action_stats.executions + EXCLUDED.executions,
  successes = action_stats.successes + EXCLUDED.successes,
  failures = action_stats.failures + EXCLUDED.failures,
  total_duration_ms = action_stats.total_duration_ms + EXCLUDED.total_duration_ms,
  last_executed_at = now()
"""
_LOAD = """
SELECT id, workspace, flow_id, node_id, conversation, phone, original_message, confidence, status, attempts,
       idempotency_key, state
  FROM action_executions WHERE id = $1
"""


class WebhookCalls:
    """One per process; sends through the process's WebhookClient."""

    def __init__(
        self, settings: Settings, *, db: asyncpg.Pool, redis: Redis, queue: Queue, client: WebhookClient
    ) -> None:
        self.settings = settings
        self.db = db
        self.queue = queue
        self.client = client
        self.rng = random.Random()
        self.rate_limiter = WebhookRateLimiter(redis, settings.webhooks.rate_limit_per_minute)
        # The group commit: `_begin` and `_end` submit one execution each; `_begin_many` and
        # `_end_many` write whatever was submitted meanwhile in one statement.
        # One statement of each in flight at a time: the executions submitted meanwhile make the next
        # group (groups of ~13 instead of ~6 in the anchors scenario, half the statements), and every
        # end of one action updates its counters' row, so a second end would only wait for its lock.
        self._begins: Coalescer[tuple[Any, ...], bool] = Coalescer(
            self._begin_many, name="webhook-begin", lanes=1
        )
        self._ends: Coalescer[tuple[Any, ...], None] = Coalescer(self._end_many, name="webhook-end", lanes=1)

    async def aclose(self) -> None:
        await self._begins.aclose()
        await self._ends.aclose()

    # --- the interpreter's port --------------------------------------------------------
    async def execute(self, call: WebhookCall, *, scope: Any) -> WebhookOutcome:
        config = call.config
        if not await self.rate_limiter.allow(scope.workspace_id):
            return WebhookOutcome(status=WebhookStatus.FAILURE, error=self.rate_limiter.refusal())
        secret = await flows_store.resolve_secret(scope.workspace_id, config.auth.secret)
        if config.auth.type != "none" and not secret:
            return WebhookOutcome(
                status=WebhookStatus.FAILURE,
                error=(
                    f"the {config.auth.type} secret of node {call.node_id} is not set in this workspace; "
                    "enter it again in the action's auth settings"
                ),
            )
        execution = Execution(
            id=uuid.uuid5(_EXECUTION_NAMESPACE, f"{scope.batch_key}/{call.flow_id}/{call.node_id}"),
            workspace=uuid.UUID(scope.workspace_id),
            flow_id=uuid.UUID(call.flow_id),
            node_id=call.node_id,
            conversation=uuid.UUID(scope.conversation_id) if scope.conversation_id else None,
            phone=scope.contact_phone,
            original_message=scope.original_message,
            confidence=call.confidence,
        )
        try:
            prepared = prepare_request(
                url_template=config.url,
                names=call.names,
                idempotency_key=execution.id.hex,
                method=config.method,
                headers_template=config.headers,
                payload_template=config.payload_template,
                auth_type=config.auth.type,
                secret=secret,
                header_name=config.auth.header_name,
                timeout_seconds=config.timeout_seconds,
                strict=call.strict,
            )
        except (URLTemplateError, TemplateError, ValueError) as exc:
            return WebhookOutcome(
                status=WebhookStatus.FAILURE, error=f"the request could not be built: {exc}"
            )
        request = prepared.request
        stored = StoredRequest(
            url=request.url,
            method=request.method.value,
            json_body=request.json_body,
            # The auth header is added again from the reference at each retry; never stored in clear.
            headers={k: v for k, v in request.headers.items() if not secret or secret not in v},
            timeout_seconds=request.timeout_seconds,
            auth_type=config.auth.type,
            auth_secret_ref=config.auth.secret,
            auth_header_name=config.auth.header_name,
            max_retries=config.max_retries,
            retry_delay_seconds=config.retry_delay_seconds,
        )
        inserted = await self._begins.submit(
            (
                execution.id,
                execution.workspace,
                execution.flow_id,
                scope.flow_versions.get(call.flow_id, 0),
                call.node_id,
                execution.conversation,
                uuid.UUID(scope.run_id) if scope.run_id else None,
                _json.encode(call.vars).decode(),
                call.confidence,
                execution.original_message,
                execution.phone,
                execution.id.hex,
                _json.encode({"request": stored, "vars": call.vars}).decode(),
                scope.epoch,
            )
        )
        if not inserted:
            await refuse_unless_held(self.db, scope.conversation_id, scope.epoch, "webhook execution")
            earlier = await self._earlier_outcome(execution.id)
            if earlier is not None:
                return earlier
        return await self._attempt(execution, request, stored, attempt=1)

    async def _earlier_outcome(self, execution_id: uuid.UUID) -> WebhookOutcome | None:
        """The outcome of this batch's earlier try, or None when its inline attempt never finished."""
        row = await self.db.fetchrow(_EARLIER, execution_id)
        if row is None or (row["status"] == ActionRunStatus.PROCESSING.value and row["attempts"] == 0):
            return None  # the worker died during the first attempt: send it again, same key
        if row["status"] == ActionRunStatus.PROCESSING.value:
            return WebhookOutcome(status=WebhookStatus.SCHEDULED, attempts=row["attempts"])
        ok = row["status"] == ActionRunStatus.COMPLETED.value
        try:
            response = msgspec.json.decode(row["response_body"] or "null")
        except msgspec.DecodeError:
            response = row["response_body"]
        return WebhookOutcome(
            status=WebhookStatus.SUCCESS if ok else WebhookStatus.FAILURE,
            status_code=row["status_code"],
            response=response,
            error=row["error"],
            duration_ms=row["duration_ms"] or 0.0,
            attempts=row["attempts"],
        )

    # --- attempts ------------------------------------------------------------------------
    async def _attempt(
        self, execution: Execution, request: WebhookRequest, stored: StoredRequest, *, attempt: int
    ) -> WebhookOutcome:
        result = await self.client.attempt(
            request,
            allow_private=self.settings.webhooks.allow_private,
            max_response_bytes=self.settings.webhooks.max_response_bytes,
        )
        duration_ms = round(result.duration_ms, 2)
        log_args = _log_args(execution, result, retry_count=attempt - 1)
        if not result.succeeded and result.retryable and attempt <= stored.max_retries:
            delay_s = backoff_seconds(
                attempt,
                base_s=stored.retry_delay_seconds,
                retry_after_s=result.retry_after_seconds,
                cap_s=self.settings.webhooks.retry_after_cap_seconds,
                rng=self.rng,
            )
            # Recorded before the job exists: a job that runs at once must find this attempt counted.
            await self.db.execute(_LOG_AND_RETRY, *log_args, attempt)
            execution_id = str(execution.id)
            # SAQ schedules in whole seconds; rounding up keeps a Retry-After from being undercut.
            await self.queue.enqueue(
                RETRY_JOB,
                execution_id=execution_id,
                attempt=attempt + 1,
                key=f"webhook:{execution_id}:{attempt + 1}",
                scheduled=math.ceil(time.time() + delay_s),
                timeout=int(stored.timeout_seconds * 2 + 30),
                retries=2,
            )
            log.info(
                "webhook retry scheduled",
                extra={
                    "execution_id": execution_id,
                    "attempt": attempt,
                    "delay_s": round(delay_s, 3),
                    "error": result.error,
                },
            )
            return WebhookOutcome(
                status=WebhookStatus.SCHEDULED,
                status_code=result.status_code,
                error=result.error,
                duration_ms=duration_ms,
                attempts=attempt,
            )
        ok = result.succeeded
        final = ActionRunStatus.COMPLETED if ok else ActionRunStatus.FAILED
        await self._ends.submit((*log_args, final.value, attempt, not ok))
        if not ok:
            log.warning(
                "webhook failed",
                extra={
                    "execution_id": str(execution.id),
                    "attempts": attempt,
                    "error": result.error,
                    "status_code": result.status_code,
                },
            )
        return WebhookOutcome(
            status=WebhookStatus.SUCCESS if ok else WebhookStatus.FAILURE,
            status_code=result.status_code,
            response=result.response,
            error=result.error,
            duration_ms=duration_ms,
            attempts=attempt,
        )

    async def retry(self, execution_id: str, attempt: int) -> WebhookOutcome | None:
        """The scheduled retry: attempt again unless the execution already ended."""
        row = await self.db.fetchrow(_LOAD, uuid.UUID(execution_id))
        if row is None or row["status"] != ActionRunStatus.PROCESSING.value or row["attempts"] != attempt - 1:
            return None  # ended, replayed or a duplicate job: nothing to do
        stored = msgspec.convert(row["state"]["request"], StoredRequest)
        execution = Execution(
            id=row["id"],
            workspace=row["workspace"],
            flow_id=row["flow_id"],
            node_id=row["node_id"],
            conversation=row["conversation"],
            phone=row["phone"],
            original_message=row["original_message"],
            confidence=row["confidence"],
        )
        secret = await flows_store.resolve_secret(str(row["workspace"]), stored.auth_secret_ref)
        if stored.auth_type != "none" and not secret:
            result = _unsendable(stored, "the auth secret is no longer set in this workspace; enter it again")
            await self._ends.submit(
                (
                    *_log_args(execution, result, retry_count=attempt - 1),
                    ActionRunStatus.FAILED.value,
                    attempt,
                    True,
                )
            )
            outcome = WebhookOutcome(status=WebhookStatus.FAILURE, error=result.error, attempts=attempt)
        else:
            headers = (
                apply_auth(
                    stored.headers,
                    auth_type=stored.auth_type,
                    secret=secret,
                    header_name=stored.auth_header_name,
                )
                if stored.auth_type != "none"
                else stored.headers
            )
            request = WebhookRequest(
                url=stored.url,
                method=HttpMethod(stored.method),
                headers=headers,
                json_body=stored.json_body,
                timeout_seconds=stored.timeout_seconds,
                idempotency_key=row["idempotency_key"],
                secret_values=[secret] if secret else [],
            )
            outcome = await self._attempt(execution, request, stored, attempt=attempt)
        return outcome

    # --- the group commit ---------------------------------------------------------------
    async def _begin_many(self, items: list[tuple[Any, ...]]) -> list[bool]:
        """Insert the executions; for each, whether it is new (False: an earlier try of its batch left it)."""
        inserted = {r["id"] for r in await self.db.fetch(_INSERT_EXECUTIONS, *map(list, zip(*items)))}
        results = []
        for item in items:
            results.append(item[0] in inserted)
            inserted.discard(item[0])  # the same execution twice in one group: only the first is new
        return results

    async def _end_many(self, items: list[tuple[Any, ...]]) -> list[None]:
        """Log the last attempts, end their executions and count them (`_log_args` + final status,
        attempts, dead letter per item)."""
        await self.db.execute(_LOG_AND_FINISH_MANY, *map(list, zip(*items)))
        return [None] * len(items)

    # --- dead letters --------------------------------------------------------------------
    async def replay(self, workspace_id: str, execution_id: str) -> WebhookOutcome | None:
        """Send a failed execution's request again (a new attempt series, same idempotency key)."""
        try:
            execution_uuid = uuid.UUID(execution_id)
        except ValueError:
            raise LookupError(f"{execution_id!r} is not an execution id") from None
        # Compare-and-set: two replays of one dead letter send it once.
        row = await self.db.fetchrow(
            "UPDATE action_executions SET status = 'processing', dead_letter = false, attempts = 0, "
            "updated_at = now() WHERE id = $1 AND workspace = $2 AND status = 'failed' AND kind = 'webhook' "
            "RETURNING id",
            execution_uuid,
            uuid.UUID(workspace_id),
        )
        if row is None:
            raise LookupError(f"no failed webhook execution {execution_id} in this workspace")
        return await self.retry(execution_id, 1)


def _log_args(execution: Execution, result: AttemptResult, *, retry_count: int) -> tuple[Any, ...]:
    """Parameters $1..$16 of _LOG."""
    return (
        uuid.uuid4(),
        execution.workspace,
        execution.id,
        execution.flow_id,
        execution.node_id,
        execution.conversation,
        execution.phone,
        execution.original_message,
        execution.confidence,
        _json.encode(result.payload_masked).decode(),
        result.status_code,
        result.response_text[:MAX_LOG_BODY_CHARS],
        result.status.value,
        result.error,
        result.duration_ms,
        retry_count,
    )


def _unsendable(stored: StoredRequest, error: str) -> AttemptResult:
    return AttemptResult(
        status=AttemptStatus.FAILED,
        status_code=None,
        response=None,
        response_text="",
        truncated=False,
        error=error,
        duration_ms=0.0,
        retryable=False,
        retry_after_seconds=None,
        payload_masked={
            "method": stored.method,
            "url": stored.url,
            "headers": stored.headers,
            "body": stored.json_body,
        },
        final_url=stored.url,
    )
