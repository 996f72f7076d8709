"""External actions: the list with counters, and the five-step builder that creates an intent -> webhook flow."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from app.services import actions, auth
from ui.forms import form_to_config
from ui.render import page

STEPS = (
    "Name and description",
    "Training examples",
    "Webhook",
    "Payload and variables",
    "Messages and retries",
)
# Builder field prefix per node of the flow it creates.
_PREFIXES = {"n1": "trigger.", "n2": "webhook."}


class ActionsController(Controller):
    path = "/actions"

    @get("/", name="actions")
    async def list_page(
        self, request: Request, principal: auth.Principal, created: str | None = None
    ) -> Template:
        items = await actions.list_actions(principal.workspace_id)
        return page(request, "pages/actions.html", nav="actions", actions=items, created=created)

    @get("/new", name="action_builder")
    async def builder(self, request: Request, principal: auth.Principal) -> Template:
        return page(
            request,
            "pages/action_builder.html",
            nav="actions",
            steps=STEPS,
            a=actions.blank_action(),
            errors={},
            names=_names([]),
        )

    @post("/new", name="action_create")
    async def create(self, request: Request, principal: auth.Principal) -> Template | Redirect:
        form = await request.form()
        values, parse_errors = form_to_config(form.multi_items())
        action = actions.blank_action()
        action["trigger"]["match"].update((values.get("trigger") or {}).get("match", {}))
        action["trigger"]["match"]["kind"] = "intent"
        action["webhook"].update(values.get("webhook") or {})
        errors = {e.field: e.message for e in parse_errors}
        name = action["trigger"]["match"].get("display_name") or ""
        for e in actions.check_action(name, action["trigger"], action["webhook"]):
            key = _PREFIXES.get(e.node_id or "", "") + (e.field or "").removeprefix("config.")
            errors[key] = f"{errors[key]} {e.message}" if key in errors else e.message
        if errors:
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
        flow = await actions.create_action(
            principal.workspace_id,
            action["trigger"],
            action["webhook"],
            activate="true" in form.getall("_activate", []),
            author=principal.email,
        )
        return Redirect(path=f"/actions?created={flow.id}")


def _names(variables: list[str]) -> list[str]:
    return (
        ["contact.first_name", "contact.phone", "message_text", "conversation.id"]
        + [f"vars.{v}" for v in variables if v]
        + ["vars.*"]
    )
