"""Logs: flow runs and webhook executions with filters, a detail view, and a chart over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.response import Template

from app.services import actions as action_catalogue
from app.services import auth, flows_store, runs
from ui.charts import executions_chart
from ui.render import page

WINDOWS_HOURS = (1, 24, 24 * 7, 24 * 30)
OK_STATUSES = frozenset({"completed", "success", "ok"})


class LogsController(Controller):
    path = "/logs"

    @get("/", name="logs")
    async def list_page(
        self,
        request: Request,
        principal: auth.Principal,
        flow_id: str | None = None,
        node_id: str | None = None,
        status: str | None = None,
        hours: int = 24,
    ) -> Template:
        hours = hours if hours in WINDOWS_HOURS else 24
        since = datetime.now(UTC) - timedelta(hours=hours)
        flows = await flows_store.list_flows(principal.workspace_id)
        actions = [a for f in flows for a in action_catalogue.flow_actions(f) if a.action]
        run_items, log_page = [], None
        if flow_id and node_id:
            log_page = await runs.action_logs(
                principal.workspace_id, flow_id, node_id, status=status or None, since=since, limit=200
            )
            events = [(i.created_at, i.status in OK_STATUSES) for i in (log_page.items if log_page else [])]
        else:
            run_items = await runs.list_runs(
                principal.workspace_id, flow_id=flow_id or None, status=status or None, since=since, limit=200
            )
            events = [(r.started_at, r.error is None and r.status != "failed") for r in run_items]
        chart = executions_chart(events, hours=hours)
        return page(
            request,
            "pages/logs.html",
            partial="partials/logs_results.html",
            nav="logs",
            flows=flows,
            actions=actions,
            runs=run_items,
            log_page=log_page,
            chart=chart,
            filters={
                "flow_id": flow_id or "",
                "node_id": node_id or "",
                "status": status or "",
                "hours": hours,
            },
            windows=WINDOWS_HOURS,
        )

    @get("/runs/{run_id:str}", name="run_detail")
    async def run_detail(self, request: Request, principal: auth.Principal, run_id: str) -> Template:
        run = await runs.get_run(principal.workspace_id, run_id)
        if run is None:
            raise NotFoundException("This run does not exist in your workspace.")
        return page(request, "pages/run.html", partial="partials/run_detail.html", nav="logs", run=run)
