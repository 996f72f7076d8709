"""Action tester: a test conversation explained turn by turn (dry run or for real); a batch test."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from app.services import auth, flows_store
from app.services import dry_run as tester
from flows.nodes.registry import NODE_TYPES
from ui.render import is_htmx, page


class TurnInput(msgspec.Struct):
    """The tester form, parsed: the request to run, or the reasons it cannot run (field -> message)."""

    request: tester.TesterRequest | None
    errors: dict[str, str]


def _json_field(form: Any, name: str, errors: dict[str, str], what: str) -> Any:
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        errors[name] = f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})."
        return None


def parse_turn(form: Any) -> TurnInput:
    errors: dict[str, str] = {}
    message = (form.get("message") or "").strip()
    if not message:
        errors["message"] = "Type what the customer says."
    sample = _json_field(form, "sample_response", errors, "The sample response")
    document = _json_field(form, "document", errors, "The flow on the canvas")
    state = None
    raw_state = (form.get("state") or "").strip()
    if raw_state:
        try:
            state = msgspec.json.decode(raw_state, type=tester.TesterState)
        except msgspec.DecodeError:
            errors["state"] = "This test conversation cannot be continued: press Restart."
    if errors:
        return TurnInput(request=None, errors=errors)
    request = tester.TesterRequest(
        message=message,
        language=form.get("language") or None,
        execute=form.get("mode") == "execute",
        flow_id=form.get("flow_id") or None,
        document=document if isinstance(document, dict) else None,
        state=state,
        sample_response=sample,
    )
    return TurnInput(request=request, errors={})


def steps_of(result: tester.TesterResponse, flow_names: dict[str, str]) -> list[dict[str, Any]]:
    """The nodes that ran, in order, with the port each took: what the canvas highlights."""
    return [
        {
            "flow_id": t["flow_id"],
            "flow_name": flow_names.get(t["flow_id"], "this draft"),
            "node_id": t["node_id"],
            "label": NODE_TYPES[t["type"]].label,
            "port": t["port"],
            "error": t["error"],
        }
        for t in result.trace
        if t["type"] in NODE_TYPES
    ]


class TesterController(Controller):
    path = "/tester"

    @get("/", name="tester")
    async def tester_page(
        self,
        request: Request,
        principal: auth.Principal,
        flow_id: str | None = None,
        node_id: str | None = None,
        embedded: bool = False,
    ) -> Template:
        """The tester page; for htmx, a fresh test conversation panel (Restart)."""
        flows = await flows_store.list_flows(principal.workspace_id)
        return page(
            request,
            "pages/tester.html",
            partial="partials/tester_panel.html",
            nav="tester",
            flows=flows,
            tester_flow_id=flow_id or "",
            tester_in_editor=embedded,
            batch=None,
        )

    @post("/run", name="tester_run")
    async def run(self, request: Request, principal: auth.Principal) -> Template:
        """One turn of the test conversation: the customer's message, the replies, and why."""
        form = await request.form()
        parsed = parse_turn(form)
        flows = await flows_store.list_flows(principal.workspace_id)
        flow_names = {f.id: f.name for f in flows}
        result, errors, node_errors = None, dict(parsed.errors), []
        if parsed.request is not None:
            try:
                result = await request.app.state.services.tester.run(principal.workspace_id, parsed.request)
            except flows_store.FlowInvalid as exc:
                node_errors = msgspec.to_builtins(exc.errors)
                errors["document"] = "Fix the flow first: " + " ".join(e.message for e in exc.errors[:3])
            except flows_store.FlowNotFound:
                errors["flow_id"] = "This flow does not exist any more (deleted?)."
            except ValueError as exc:
                errors["message"] = str(exc)
        steps = steps_of(result, flow_names) if result else []
        trigger = {"sb:tester-turn": {"steps": steps, "errors": node_errors}}
        return page(
            request,
            "pages/tester.html",
            partial="partials/tester_turn.html",
            status_code=422 if errors else 200,
            headers={"HX-Trigger": json.dumps(trigger)},
            nav="tester",
            flows=flows,
            flow_names=flow_names,
            tester_flow_id=form.get("flow_id") or "",
            tester_in_editor=form.get("embedded") == "1",
            message=(form.get("message") or "").strip(),
            mode="execute" if form.get("mode") == "execute" else "dry",
            result=result,
            steps=steps,
            errors=errors,
            state_json=msgspec.json.encode(result.state).decode() if result else (form.get("state") or ""),
            turn_in_page=not is_htmx(request),  # without htmx the whole page shows this turn
            batch=None,
        )

    @post("/batch", name="tester_batch")
    async def batch(
        self,
        request: Request,
        principal: auth.Principal,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Template:
        upload = data.get("file")
        flow_id = data.get("flow_id") or None
        if not isinstance(upload, UploadFile):
            batch = tester.BatchReport(error="Choose a CSV or JSONL file.")
        else:
            batch = await request.app.state.services.tester.run_batch(
                principal.workspace_id,
                upload.filename or "",
                await upload.read(),
                flow_id=flow_id if isinstance(flow_id, str) else None,
            )
        error = batch.error
        return page(
            request,
            "pages/tester.html",
            partial="partials/batch_result.html",
            status_code=422 if error else 200,
            nav="tester",
            flows=await flows_store.list_flows(principal.workspace_id),
            tester_flow_id=flow_id or "",
            tester_in_editor=False,
            batch=batch,
        )
