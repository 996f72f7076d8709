"""Logs: flow runs and webhook executions with filters, a detail view, and a chart over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.response import Template

from app.services import actions as action_catalogue
from app.services import auth, flows_store, refused_deliveries, runs
from flows.nodes.registry import NODE_TYPES
from ui.charts import executions_chart
from ui.render import page

WINDOWS_HOURS = (1, 24, 24 * 7, 24 * 30)
OK_STATUSES = frozenset({"completed", "success", "ok"})
# What a run's status filter offers; webhook executions have their own words.
RUN_STATUSES = ("completed", "failed", "running", "abandoned")
WEBHOOK_STATUSES = ("success", "failure", "pending", "processing")
# A status chosen for one kind of log, in the other kind's words (switching kinds keeps the intent).
AS_WEBHOOK_STATUS = {"completed": "success", "failed": "failure", "running": "processing"}
AS_RUN_STATUS = {v: k for k, v in AS_WEBHOOK_STATUS.items()}
# Trace steps that are not nodes (flows/interpreter.py notes them), in words.
STEP_LABELS = {
    "intent.detect": "Intent detection",
    "intent.extract": "Variable extraction",
    "ai.answer": "AI answer",
    "ai.send": "AI reply",
    "pending.ask": "Question to the customer",
    "pending.reply": "Customer's answer",
    "pending.classify": "Reading the answer",
    "pending.resolve": "Pending action",
    "pending.taken": "Pending action",
    "pending.save": "Question to the customer",
    "pending.extract": "Variable extraction",
    "guard": "Guard",
}


def node_names(flows: list[flows_store.FlowRead]) -> dict[tuple[str, str], str]:
    """(flow id, node id) -> what a person calls the node: an intent's action name, else its type's label."""
    names: dict[tuple[str, str], str] = {}
    for flow in flows:
        for node in flow.document.get("nodes", []):
            spec = NODE_TYPES.get(node.get("type", ""))
            match = (node.get("config") or {}).get("match") or {}
            label = match.get("display_name") if match.get("kind") == "intent" else None
            names[(flow.id, node["id"])] = label or (spec.label if spec else node.get("type", ""))
    return names


def split_action(action: str | None) -> tuple[str, str] | None:
    """The "Webhook executions of" choice, `<flow id>/<node id>`, as a pair."""
    flow_id, _, node_id = (action or "").partition("/")
    return (flow_id, node_id) if flow_id and node_id else None


class LogsController(Controller):
    path = "/logs"

    @get("/", name="logs")
    async def list_page(
        self,
        request: Request,
        principal: auth.Principal,
        flow_id: str | None = None,
        node_id: str | None = None,
        action: str | None = None,
        status: str | None = None,
        hours: int = 24,
    ) -> Template:
        hours = hours if hours in WINDOWS_HOURS else 24
        since = datetime.now(UTC) - timedelta(hours=hours)
        flows = await flows_store.list_flows(principal.workspace_id)
        flow_names = {f.id: f.name for f in flows}
        actions = [a for f in flows for a in action_catalogue.flow_actions(f) if a.action]
        # The action choice names its flow: it works without choosing the flow too.
        chosen = split_action(action) or ((flow_id, node_id) if flow_id and node_id else None)
        run_items, log_page = [], None
        if status:
            status = (AS_WEBHOOK_STATUS if chosen else AS_RUN_STATUS).get(status, status)
        if chosen:
            log_page = await runs.action_logs(
                principal.workspace_id, *chosen, status=status or None, since=since, limit=200
            )
            events = [(i.created_at, i.status in OK_STATUSES) for i in (log_page.items if log_page else [])]
        else:
            run_items = await runs.list_runs(
                principal.workspace_id, flow_id=flow_id or None, status=status or None, since=since, limit=200
            )
            events = [
                (r.started_at, r.error is None and r.problem is None and r.status != "failed")
                for r in run_items
            ]
        chart = executions_chart(events, hours=hours)
        refused = await refused_deliveries.list_refused(principal.workspace_id, since=since, limit=50)
        return page(
            request,
            "pages/logs.html",
            partial="partials/logs_results.html",
            nav="logs",
            flows=flows,
            flow_names=flow_names,
            node_names=node_names(flows),
            actions=actions,
            chosen_action=next(
                (a for a in actions if chosen and (a.flow.id, a.action["id"]) == chosen), None
            ),
            runs=run_items,
            log_page=log_page,
            chart=chart,
            refused=refused,
            statuses=WEBHOOK_STATUSES if chosen else RUN_STATUSES,
            filters={
                "flow_id": "" if chosen else flow_id or "",  # "Runs of" is for runs
                "action": "/".join(chosen) if chosen else "",
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
        flows = await flows_store.list_flows(principal.workspace_id)
        return page(
            request,
            "pages/run.html",
            partial="partials/run_detail.html",
            nav="logs",
            run=run,
            flow_names={f.id: f.name for f in flows},
            node_names=node_names(flows),
            type_labels={**STEP_LABELS, **{t.type: t.label for t in NODE_TYPES.values()}},
        )
