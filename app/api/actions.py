"""/api/actions: webhook execution logs and counters per action, and dead-letter replay."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, get, post
from litestar.exceptions import NotFoundException

from app.api.params import Limit, Offset
from app.roots import AppServices
from app.services import runs
from app.services.auth import Principal
from app.services.runs import LogPage


class ReplayResult(msgspec.Struct):
    execution_id: str
    status: str
    status_code: int | None
    attempts: int
    error: str | None


class ActionController(Controller):
    path = "/api/actions"
    tags = ["actions"]

    @get("/{flow_id:str}/{node_id:str}/logs")
    async def logs(
        self,
        principal: Principal,
        flow_id: str,
        node_id: str,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> LogPage:
        page = await runs.action_logs(
            principal.workspace_id,
            flow_id,
            node_id,
            status=status,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        if page is None:
            raise NotFoundException(f"no action {flow_id}/{node_id} in this workspace")
        return page

    @post(
        "/executions/{execution_id:str}/replay", status_code=200, summary="Replay a dead-lettered execution"
    )
    async def replay(self, principal: Principal, services: AppServices, execution_id: str) -> ReplayResult:
        try:
            outcome = await services.turns.replay_webhook(principal.workspace_id, execution_id)
        except LookupError as exc:
            raise NotFoundException(str(exc)) from exc
        return ReplayResult(
            execution_id=execution_id,
            status=outcome.status.value if outcome else "skipped",
            status_code=outcome.status_code if outcome else None,
            attempts=outcome.attempts if outcome else 0,
            error=outcome.error if outcome else None,
        )
