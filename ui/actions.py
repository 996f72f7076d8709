"""External actions: the list with counters, and the five-step builder that creates an intent -> webhook flow."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from app.services import auth, flows_store, runs
from ui.forms import FieldError, check_node_config, form_to_config
from ui.render import page

STEPS = (
    "Name and description",
    "Training examples",
    "Webhook",
    "Payload and variables",
    "Messages and retries",
)


def external_actions(flow: flows_store.FlowRead) -> list[dict[str, Any]]:
    """(trigger, webhook) pairs of a flow: an intent trigger and the first call_webhook after it."""
    doc = flow.document
    nodes = {n["id"]: n for n in doc.get("nodes", [])}
    found = []
    for node in doc.get("nodes", []):
        match = node.get("config", {}).get("match", {})
        if node["type"] != "when.message_received" or match.get("kind") != "intent":
            continue
        hook = next(
            (
                nodes[e["to"]]
                for e in doc.get("edges", [])
                if e["from"] == node["id"]
                and e["to"] in nodes
                and nodes[e["to"]]["type"] == "action.call_webhook"
            ),
            None,
        )
        found.append({"flow": flow, "trigger": node, "match": match, "webhook": hook})
    return found


def blank_action() -> dict[str, Any]:
    return {
        "trigger": {
            "match": {
                "kind": "intent",
                "display_name": "",
                "description": "",
                "confidence_threshold": 0.8,
                "training_examples": [],
                "variables": [],
            }
        },
        "webhook": {
            "url": "",
            "method": "POST",
            "headers": {},
            "auth": {"type": "none"},
            "payload_template": None,
            "timeout_seconds": 5,
            "max_retries": 3,
            "retry_delay_seconds": 1,
            "success_message": "",
            "failure_message": "",
            "requires_confirmation": False,
            "confirmation_message": "",
        },
    }


class ActionsController(Controller):
    path = "/actions"

    @get("/", name="actions")
    async def list_page(
        self, request: Request, principal: auth.Principal, created: str | None = None
    ) -> Template:
        items = []
        for flow in await flows_store.list_flows(principal.workspace_id):
            for action in external_actions(flow):
                node = action["webhook"]["id"] if action["webhook"] else action["trigger"]["id"]
                action["stats"] = await runs.action_stats(principal.workspace_id, flow.id, node)
                items.append(action)
        return page(request, "pages/actions.html", nav="actions", actions=items, created=created)

    @get("/new", name="action_builder")
    async def builder(self, request: Request, principal: auth.Principal) -> Template:
        return page(
            request,
            "pages/action_builder.html",
            nav="actions",
            steps=STEPS,
            a=blank_action(),
            errors={},
            names=_names([]),
        )

    @post("/new", name="action_create")
    async def create(self, request: Request, principal: auth.Principal) -> Template | Redirect:
        form = await request.form()
        values, parse_errors = form_to_config(form.multi_items())
        action = blank_action()
        action["trigger"]["match"].update((values.get("trigger") or {}).get("match", {}))
        action["webhook"].update(values.get("webhook") or {})
        action["trigger"]["match"]["kind"] = "intent"
        errors: dict[str, str] = {}
        for e in parse_errors:
            errors[e.field] = e.message
        trigger_cfg, trigger_errors = check_node_config("n1", "when.message_received", action["trigger"])
        webhook_cfg, webhook_errors = check_node_config("n2", "action.call_webhook", action["webhook"])
        _collect(errors, "trigger.", trigger_errors)
        _collect(errors, "webhook.", webhook_errors)
        name = action["trigger"]["match"].get("display_name") or ""
        if errors or trigger_cfg is None or webhook_cfg is None:
            variables = [v.get("name", "") for v in action["trigger"]["match"].get("variables", [])]
            return page(
                request,
                "pages/action_builder.html",
                status_code=422,
                nav="actions",
                steps=STEPS,
                a=action,
                errors=errors,
                names=_names(variables),
            )
        doc = {
            "schema": "switchboard.flow/v1",
            "name": name,
            "description": action["trigger"]["match"].get("description", ""),
            "status": "draft",
            "priority": 10,
            "nodes": [
                {
                    "id": "n1",
                    "type": "when.message_received",
                    "config": trigger_cfg,
                    "position": {"x": 80, "y": 120},
                },
                {
                    "id": "n2",
                    "type": "action.call_webhook",
                    "config": webhook_cfg,
                    "position": {"x": 400, "y": 120},
                },
            ],
            "edges": [{"from": "n1", "to": "n2"}],
        }
        flow = await flows_store.create_flow(principal.workspace_id, doc, author=principal.email)
        if "true" in form.getall("_activate"):
            await flows_store.publish(principal.workspace_id, flow.id, author=principal.email)
        return Redirect(path=f"/actions?created={flow.id}")


def _collect(errors: dict[str, str], prefix: str, found: list[FieldError]) -> None:
    for e in found:
        key = prefix + e.field if e.field else prefix.rstrip(".")
        errors[key] = (errors[key] + " " + e.message) if key in errors else e.message


def _names(variables: list[str]) -> list[str]:
    return (
        ["contact.first_name", "contact.phone", "message_text", "conversation.id"]
        + [f"vars.{v}" for v in variables if v]
        + ["vars.*"]
    )
