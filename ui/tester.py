"""Action tester: one message (dry run or execute) explained in full, and a batch test with a confusion table."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from app.services import auth, flows_store
from app.services import dry_run as tester
from ui.render import page

MAX_BATCH_ROWS = 500
NO_MATCH = "(none)"


def predicted_label(result: tester.TesterResponse) -> str:
    """What answered, in the words a batch file uses: the action's name, the core intent, or (none)."""
    if result.layer == "external_action" and result.match:
        return str(result.match.get("display_name") or result.match.get("node_id"))
    if result.layer == "core_intent" and result.answer and result.answer.get("intent"):
        return str(result.answer["intent"])
    if result.layer == "trigger":
        return "trigger"
    return NO_MATCH


def parse_batch(filename: str, raw: bytes) -> list[tuple[str, str, str]]:
    """(message, language, expected) rows from CSV (header: message/text, expected, language) or JSON lines."""
    text = raw.decode("utf-8-sig")
    rows: list[dict[str, Any]]
    if filename.endswith((".jsonl", ".json")) or text.lstrip().startswith("{"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for row in rows[:MAX_BATCH_ROWS]:
        message = str(row.get("message") or row.get("text") or "").strip()
        expected = row.get("expected", row.get("intent"))
        if message:
            out.append(
                (
                    message,
                    str(row.get("language") or ""),
                    str(expected) if expected not in (None, "", "oos") else NO_MATCH,
                )
            )
    return out


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
        error, rows = None, []
        if not isinstance(upload, UploadFile):
            error = "Choose a CSV or JSONL file."
        else:
            try:
                rows = parse_batch(upload.filename or "", await upload.read())
            except (ValueError, UnicodeDecodeError) as exc:
                error = f"Could not read {upload.filename}: {exc}."
        flow_id = data.get("flow_id") or None
        results = []
        for message, language, expected in rows:
            res = await request.app.state.services.tester.run(
                principal.workspace_id,
                tester.TesterRequest(
                    message=message,
                    language=language or None,
                    flow_id=flow_id if isinstance(flow_id, str) else None,
                ),
            )
            results.append(
                {
                    "message": message,
                    "expected": expected,
                    "predicted": predicted_label(res),
                    "confidence": (res.match or {}).get("confidence"),
                }
            )
        labels = sorted({r["expected"] for r in results} | {r["predicted"] for r in results})
        confusion = Counter((r["expected"], r["predicted"]) for r in results)
        correct = sum(1 for r in results if r["expected"] == r["predicted"])
        batch = {
            "results": results,
            "labels": labels,
            "confusion": confusion,
            "total": len(results),
            "accuracy": correct / len(results) if results else None,
            "error": error,
        }
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
