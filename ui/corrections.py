"""The "this should have been <action> / none" form of the tester and run pages: one htmx POST."""

from __future__ import annotations

from litestar import Controller, Request, post
from litestar.response import Template

from app.services import auth, corrections, flows_store
from ui.render import fragment

SEPARATOR = "::"


class CorrectionsController(Controller):
    path = "/corrections"

    @post("/", name="correction_add")
    async def add(self, request: Request, principal: auth.Principal) -> Template:
        """`choice` is "<flow_id>::<node_id>" (should have been this action) or "none::<flow_id>::<matched node>"."""
        form = await request.form()
        parts = str(form.get("choice") or "").split(SEPARATOR)
        error, saved = None, None
        if len(parts) == 3 and parts[0] == corrections.NONE:
            data = corrections.CorrectionCreate(
                flow_id=parts[1], node_id=corrections.NONE, matched_node_id=parts[2]
            )
        elif len(parts) == 2:
            data = corrections.CorrectionCreate(flow_id=parts[0], node_id=parts[1])
        else:
            data, error = None, "Choose the action this message should have matched, or none."
        if data is not None:
            data.message = str(form.get("message") or "") or None
            data.run_id = str(form.get("run_id") or "") or None
            try:
                saved = await corrections.add_correction(principal.workspace_id, data, author=principal.email)
            except (corrections.CorrectionError, flows_store.FlowNotFound, flows_store.FlowInvalid) as exc:
                error = (
                    str(exc)
                    if not isinstance(exc, flows_store.FlowNotFound)
                    else "That flow no longer exists."
                )
        return fragment(
            request,
            "partials/correction_result.html",
            status_code=422 if error else 200,
            error=error,
            saved=saved,
        )
