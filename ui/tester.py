"""Action tester: one message (dry run or execute) with the full explanation, and a batch test."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from app.services import auth, flows_store
from app.services import dry_run as tester
from ui.render import page


class TesterController(Controller):
    path = "/tester"

    @get("/", name="tester")
    async def tester_page(
        self,
        request: Request,
        principal: auth.Principal,
        flow_id: str | None = None,
        node_id: str | None = None,
    ) -> Template:
        flows = await flows_store.list_flows(principal.workspace_id)
        return page(
            request,
            "pages/tester.html",
            nav="tester",
            flows=flows,
            flow_id=flow_id or "",
            result=None,
            batch=None,
            message="",
            language="",
            error=None,
        )

    @post("/run", name="tester_run")
    async def run(self, request: Request, principal: auth.Principal) -> Template:
        form = await request.form()
        message = (form.get("message") or "").strip()
        execute = form.get("mode") == "execute"
        req = tester.TesterRequest(
            message=message,
            language=form.get("language") or None,
            execute=execute,
            flow_id=form.get("flow_id") or None,
        )
        result, error = None, None
        try:
            result = await request.app.state.services.tester.run(principal.workspace_id, req)
        except (ValueError, flows_store.FlowInvalid, flows_store.FlowNotFound) as exc:
            error = (
                "; ".join(e.message for e in exc.errors)
                if isinstance(exc, flows_store.FlowInvalid)
                else str(exc)
            )
        flows = await flows_store.list_flows(principal.workspace_id)
        return page(
            request,
            "pages/tester.html",
            partial="partials/tester_result.html",
            status_code=422 if error else 200,
            nav="tester",
            flows=flows,
            flow_id=form.get("flow_id") or "",
            result=result,
            batch=None,
            message=message,
            language=form.get("language") or "",
            error=error,
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
            flow_id=flow_id or "",
            result=None,
            batch=batch,
            message="",
            language="",
            error=None,
        )
