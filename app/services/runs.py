"""Run history: the trace of every turn, and the logs and counters of webhook actions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.db import engine
from app.services.values import iso, parse_uuid


class RunProblem(msgspec.Struct):
    """The first node (or step) of a run that failed, e.g. a webhook that answered 500."""

    flow_id: str | None
    node_id: str | None
    type: str
    error: str


class RunSummary(msgspec.Struct):
    id: str
    conversation_id: str | None
    kind: str
    status: str  # the turn's own status: "completed" even when a node in it failed
    layer: str | None
    flows: list[dict[str, Any]]
    started_at: str
    finished_at: str | None
    error: str | None
    problem: RunProblem | None = None


class RunRead(RunSummary, kw_only=True):
    message_ids: list[str]
    trace: list[dict[str, Any]]
    warnings: list[str]
    result: dict[str, Any]


class ActionLogRead(msgspec.Struct):
    id: str
    execution_id: str | None
    flow_id: str
    node_id: str
    conversation_id: str | None
    phone: str
    original_message: str
    confidence: float | None
    request: dict[str, Any]
    status_code: int | None
    response_body: str
    status: str
    error: str | None
    duration_ms: float
    retry_count: int
    created_at: str
    test: bool = False
    """Sent by the tester (execute=true), not for a customer's message."""


class ActionStatsRead(msgspec.Struct):
    flow_id: str
    node_id: str
    executions: int
    successes: int
    failures: int
    success_rate: float | None
    mean_duration_ms: float | None
    last_executed_at: str | None


class LogPage(msgspec.Struct):
    items: list[ActionLogRead]
    total: int
    limit: int
    offset: int
    stats: ActionStatsRead


# The first trace entry with an error: a failed webhook, a template that could not render, a guard.
_PROBLEM = (
    "(SELECT jsonb_build_object('flow_id', NULLIF(t->>'flow_id', ''), 'node_id', NULLIF(t->>'node_id', ''), "
    "'type', t->>'type', 'error', t->>'error') "
    "FROM jsonb_array_elements(CASE WHEN jsonb_typeof(trace) = 'array' THEN trace ELSE '[]'::jsonb END) t "
    "WHERE t->>'error' IS NOT NULL LIMIT 1)"
)


def _summary(row: Any) -> dict[str, Any]:
    problem = row["problem"]
    return {
        "id": str(row["id"]),
        "conversation_id": str(row["conversation"]) if row["conversation"] else None,
        "kind": row["kind"],
        "status": row["status"],
        "layer": row["layer"],
        "flows": row["flows"] or [],
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "error": row["error"],
        "problem": RunProblem(**problem) if problem else None,
    }


async def list_runs(
    workspace_id: str,
    *,
    conversation_id: str | None = None,
    flow_id: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RunSummary]:
    clauses: list[str] = ["workspace = $1"]
    args: list[Any] = [uuid.UUID(workspace_id)]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    if conversation_id:
        add("conversation = {}", parse_uuid(conversation_id))
    if flow_id:
        add("flows @> {}::jsonb", msgspec.json.encode([{"flow_id": flow_id}]).decode())
    if status == "failed":  # a completed turn whose webhook failed counts as failed too
        add("(status = {} OR " + _PROBLEM + " IS NOT NULL)", status)
    elif status == "completed":
        add("(status = {} AND " + _PROBLEM + " IS NULL)", status)
    elif status:
        add("status = {}", status)
    if since:
        add("started_at >= {}", since)
    if until:
        add("started_at < {}", until)
    args.extend([min(limit, 500), offset])
    rows = await engine.pool().fetch(
        "SELECT id, conversation, kind, status, layer, flows, started_at, finished_at, error, "
        f"{_PROBLEM} AS problem FROM runs "
        f"WHERE {' AND '.join(clauses)} ORDER BY started_at DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return [RunSummary(**_summary(r)) for r in rows]


async def get_run(workspace_id: str, run_id: str) -> RunRead | None:
    rid = parse_uuid(run_id)
    if rid is None:
        return None
    row = await engine.pool().fetchrow(
        f"SELECT *, {_PROBLEM} AS problem FROM runs WHERE id = $1 AND workspace = $2",
        rid,
        uuid.UUID(workspace_id),
    )
    if row is None:
        return None
    return RunRead(
        **_summary(row),
        message_ids=row["message_ids"] or [],
        trace=row["trace"] or [],
        warnings=row["warnings"] or [],
        result=row["result"] or {},
    )


def _stats(flow_id: str, node_id: str, row: Any) -> ActionStatsRead:
    n = row["executions"] if row else 0
    return ActionStatsRead(
        flow_id=flow_id,
        node_id=node_id,
        executions=n,
        successes=row["successes"] if row else 0,
        failures=row["failures"] if row else 0,
        success_rate=round(row["successes"] / n, 4) if n else None,
        mean_duration_ms=round(row["total_duration_ms"] / n, 2) if n else None,
        last_executed_at=iso(row["last_executed_at"]) if row else None,
    )


async def action_stats(
    workspace_id: str, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], ActionStatsRead]:
    """Counters of many (flow id, node id) actions in one query; an action never run counts zero."""
    wanted = [(fid, node) for fid, node in pairs if parse_uuid(fid) is not None]
    rows = await engine.pool().fetch(
        "SELECT flow_id, node_id, executions, successes, failures, total_duration_ms, last_executed_at "
        "FROM action_stats WHERE workspace = $1 AND (flow_id, node_id) IN "
        "(SELECT * FROM unnest($2::uuid[], $3::text[]))",
        uuid.UUID(workspace_id),
        [parse_uuid(fid) for fid, _ in wanted],
        [node for _, node in wanted],
    )
    found = {(str(r["flow_id"]), r["node_id"]): r for r in rows}
    return {pair: _stats(pair[0], pair[1], found.get(pair)) for pair in pairs}


async def action_logs(
    workspace_id: str,
    flow_id: str,
    node_id: str,
    *,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> LogPage | None:
    fid = parse_uuid(flow_id)
    if fid is None:
        return None
    pool = engine.pool()
    # Another workspace's action is "not found", not an empty page.
    if not await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM flows WHERE id = $1 AND workspace = $2)", fid, uuid.UUID(workspace_id)
    ):
        return None
    clauses, args = (
        ["workspace = $1", "flow_id = $2", "node_id = $3"],
        [uuid.UUID(workspace_id), fid, node_id],
    )
    for sql, value in (("status = {}", status), ("created_at >= {}", since), ("created_at < {}", until)):
        if value is not None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))
    where = " AND ".join(clauses)
    total = await pool.fetchval(f"SELECT count(*) FROM external_action_logs WHERE {where}", *args)
    limit = min(max(limit, 1), 500)
    rows = await pool.fetch(
        f"SELECT * FROM external_action_logs WHERE {where} ORDER BY created_at DESC "
        f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args,
        limit,
        offset,
    )
    items = [
        ActionLogRead(
            id=str(r["id"]),
            execution_id=str(r["execution"]) if r["execution"] else None,
            flow_id=str(r["flow_id"]),
            node_id=r["node_id"],
            conversation_id=str(r["conversation_id"]) if r["conversation_id"] else None,
            phone=r["phone"],
            original_message=r["original_message"],
            confidence=r["confidence"],
            request=r["request"] or {},
            status_code=r["status_code"],
            response_body=r["response_body"],
            status=r["status"],
            error=r["error"],
            duration_ms=r["duration_ms"],
            retry_count=r["retry_count"],
            created_at=iso(r["created_at"]),
            test=r["test"],
        )
        for r in rows
    ]
    return LogPage(
        items=items,
        total=total,
        limit=limit,
        offset=offset,
        stats=(await action_stats(workspace_id, [(flow_id, node_id)]))[(flow_id, node_id)],
    )
