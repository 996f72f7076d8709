"""Flows list: create, activate/pause, duplicate, delete, import and export."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body
from litestar.response import Redirect, Response, Template

from app.services import auth, flows_store
from flows.schema import FlowStatus, encode_document
from flows.validate import validate_document
from ui.render import fragment, page


async def _get(principal: auth.Principal, flow_id: str) -> flows_store.FlowRead:
    try:
        return await flows_store.get_flow(principal.workspace_id, flow_id)
    except flows_store.FlowNotFound as exc:
        raise NotFoundException("This flow does not exist (deleted?).") from exc


class FlowsController(Controller):
    path = "/flows"

    @get("/", name="flows")
    async def list_page(self, request: Request, principal: auth.Principal) -> Template:
        flows = await flows_store.list_flows(principal.workspace_id)
        return page(
            request,
            "pages/flows.html",
            partial="partials/flows_table.html",
            nav="flows",
            flows=flows,
            import_result=None,
        )

    @post("/", name="flows_create")
    async def create(self, request: Request, principal: auth.Principal) -> Redirect | Template:
        form = await request.form()
        doc = flows_store.starter_document(form.get("name") or "")
        flow = await flows_store.create_flow(principal.workspace_id, doc, author=principal.email)
        return Redirect(path=f"/flows/{flow.id}/edit")

    @post("/{flow_id:str}/toggle", name="flows_toggle")
    async def toggle(self, request: Request, principal: auth.Principal, flow_id: str) -> Template | Redirect:
        flow = await _get(principal, flow_id)
        target = FlowStatus.PAUSED if flow.status is FlowStatus.ACTIVE else FlowStatus.ACTIVE
        try:
            flow = await flows_store.set_status(
                principal.workspace_id, flow_id, target, author=principal.email
            )
        except flows_store.FlowInvalid as exc:
            message = (
                "Cannot activate “"
                + flow.name
                + "”: "
                + " ".join(e.message for e in exc.errors[:3])
                + " Open the editor and Validate."
            )
            return fragment(
                request,
                "partials/flow_row.html",
                flow=flow,
                headers={"HX-Trigger": json.dumps({"sb:flash": message})},
            )
        if not request.htmx:
            return Redirect(path="/flows")
        return fragment(request, "partials/flow_row.html", flow=flow)

    @post("/{flow_id:str}/duplicate", name="flows_duplicate")
    async def duplicate(
        self, request: Request, principal: auth.Principal, flow_id: str
    ) -> Template | Redirect:
        await _get(principal, flow_id)
        await flows_store.duplicate_flow(principal.workspace_id, flow_id, author=principal.email)
        if not request.htmx:
            return Redirect(path="/flows")
        return fragment(
            request, "partials/flows_table.html", flows=await flows_store.list_flows(principal.workspace_id)
        )

    @post("/{flow_id:str}/delete", name="flows_delete")
    async def delete(
        self, request: Request, principal: auth.Principal, flow_id: str
    ) -> Response[str] | Redirect:
        await _get(principal, flow_id)
        await flows_store.delete_flow(principal.workspace_id, flow_id)
        if not request.htmx:
            return Redirect(path="/flows")
        return Response(content="", media_type="text/html")  # the row swaps itself away

    @get("/{flow_id:str}/export", name="flows_export")
    async def export(self, principal: auth.Principal, flow_id: str) -> Response[bytes]:
        await _get(principal, flow_id)
        doc = await flows_store.export_flow(principal.workspace_id, flow_id)
        filename = flows_store.slugify(doc.name) + ".flow.json"
        return Response(
            content=encode_document(doc),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @post("/import", name="flows_import")
    async def import_files(
        self,
        request: Request,
        principal: auth.Principal,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Template:
        """Files from the form, or (after the same-name question) the documents it carried back."""
        documents, names, unreadable = await _read_import(data)
        choice = data.get("on_existing") or None
        try:
            on_existing = flows_store.OnExisting(choice) if choice else None
        except ValueError:
            on_existing, unreadable = None, [_file_error("(form)", "Choose Replace or Keep both.")]
        result: dict[str, Any]
        if unreadable or not documents:
            result = {
                "created": [],
                "errors": unreadable + _invalid(documents, names)
                or [_file_error("(none)", "Choose at least one .flow.json file.")],
                "missing_secrets": [],
            }
        else:
            imported = await flows_store.import_flows(
                principal.workspace_id, documents, author=principal.email, on_existing=on_existing
            )
            result = {
                "created": imported.created,
                "replaced": imported.replaced,
                "outcomes": imported.outcomes,
                "missing_secrets": imported.missing_secrets,
                "errors": [{**e, "file": names[e["index"]]} for e in imported.errors],
            }
            if imported.conflicts:
                # Nothing was imported: ask, carrying the documents back (the files are not sent twice).
                result["question"] = {
                    "message": imported.conflict_message(),
                    "count": len(imported.conflicts),
                    "documents": json.dumps(documents),
                    "names": json.dumps(names),
                }
        status = 422 if result["errors"] else 200
        flows = await flows_store.list_flows(principal.workspace_id)
        return page(
            request,
            "pages/flows.html",
            partial="partials/import_result_oob.html",
            status_code=status,
            nav="flows",
            flows=flows,
            import_result=result,
            oob=True,
        )


def _invalid(documents: list[Any], names: list[str]) -> list[dict[str, Any]]:
    """The readable files' own errors, so one answer names every file to fix."""
    found = []
    for document, name in zip(documents, names, strict=True):
        _, errors = validate_document(document)
        if errors:
            label = document.get("name") if isinstance(document, dict) else None
            found.append({"file": name, "name": label, "errors": msgspec.to_builtins(errors)})
    return found


def _file_error(file: str, message: str) -> dict[str, Any]:
    return {"file": file, "name": None, "errors": [{"node_id": None, "field": None, "message": message}]}


async def _read_import(data: dict[str, Any]) -> tuple[list[Any], list[str], list[dict[str, Any]]]:
    """(documents, their file names, unreadable files) from an import form."""
    if data.get("documents"):
        try:
            documents = json.loads(data["documents"])
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
            documents = None
        if not isinstance(documents, list):
            return [], [], [_file_error("(form)", "The form was damaged; choose the files again.")]
        try:
            names = json.loads(data.get("names") or "[]")
        except (ValueError, RecursionError):
            names = []
        if not isinstance(names, list) or len(names) != len(documents):
            names = [f"document {i + 1}" for i in range(len(documents))]
        return documents, [str(n) for n in names], []
    files = data.get("files") or []
    if not isinstance(files, list):
        files = [files]
    documents: list[Any] = []
    names: list[str] = []
    unreadable: list[dict[str, Any]] = []
    for upload in files:
        if not isinstance(upload, UploadFile):
            continue
        raw = await upload.read()
        try:
            documents.append(json.loads(raw))
            names.append(upload.filename)
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            unreadable.append(_file_error(upload.filename, f"Not JSON: {exc}. Export the flow again."))
    return documents, names, unreadable
