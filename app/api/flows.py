"""/api/flows: drafts, versions, publish, rollback, import and export of flow documents."""

from __future__ import annotations

import builtins  # the handlers named `list` shadow the name in their class
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.exceptions import ValidationException

from app.services import flows_store
from app.services.auth import Principal
from app.services.flows_store import FlowRead, FlowVersionRead, ImportResult
from flows.schema import FlowStatus, encode_document
from flows.validate import validate_document


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: int


class StatusRequest(msgspec.Struct, forbid_unknown_fields=True):
    status: FlowStatus


class ValidationReport(msgspec.Struct):
    valid: bool
    errors: list[dict[str, Any]]


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValidationException(f"the body is not valid JSON: {exc}") from exc


def _secret_values(raw: Any) -> dict[str, str]:
    """The import's `secrets`: an object of secret names to their values, all text."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ValidationException(
            'secrets must be an object of secret names to their values as text, like {"shop_api_key": "sk-..."}'
        )
    return raw


def _on_existing(value: object) -> flows_store.OnExisting | None:
    if value is None or value == "":
        return None
    try:
        return flows_store.OnExisting(value)
    except ValueError:
        raise ValidationException(f'on_existing must be "replace" or "copy", not {value!r}') from None


class FlowController(Controller):
    path = "/api/flows"
    tags = ["flows"]

    @post("/", summary="Create a flow from a DESIGN flow document (published at once when status is active)")
    async def create(self, principal: Principal, request: Request) -> FlowRead:
        return await flows_store.create_flow(
            principal.workspace_id, await _json_body(request), author=principal.email
        )

    @get("/")
    async def list(self, principal: Principal) -> list[FlowRead]:
        return await flows_store.list_flows(principal.workspace_id)

    @post("/validate", status_code=200, summary="Check a document without saving it")
    async def validate(self, principal: Principal, request: Request) -> ValidationReport:
        """Like every API route, for a caller with a token or a session (the editor sends its CSRF token)."""
        _, errors = validate_document(await request.body())
        return ValidationReport(valid=not errors, errors=msgspec.to_builtins(errors))

    @post(
        "/import",
        status_code=200,
        summary="Create one document or a list; nothing is created if one is invalid",
    )
    async def import_(
        self, principal: Principal, request: Request, on_existing: str | None = None
    ) -> Response:
        """`on_existing` (query or body): "replace" or "copy" when a flow of that name exists; else 409."""
        body = await _json_body(request)
        secret_values: dict[str, str] = {}
        if isinstance(body, dict) and "flows" in body:
            secret_values = _secret_values(body.get("secrets"))
            on_existing = body.get("on_existing") or on_existing
            body = body["flows"]
        documents = body if isinstance(body, list) else [body]
        result: ImportResult = await flows_store.import_flows(
            principal.workspace_id,
            documents,
            author=principal.email,
            secret_values=secret_values,
            on_existing=_on_existing(on_existing),
        )
        if result.conflicts:
            error = (
                f"{result.conflict_message()}. Nothing was imported: send "
                '"on_existing": "replace" (the existing flow takes the document as its next version) or '
                '"copy" (keep both; the copy is paused), in the body {"flows": [...], "on_existing": ...} '
                "or as ?on_existing="
            )
            return Response(content={"error": error, "conflicts": result.conflicts}, status_code=409)
        return Response(content=result, status_code=422 if result.errors else 201)

    @get("/{flow_id:str}")
    async def read(self, principal: Principal, flow_id: str) -> FlowRead:
        return await flows_store.get_flow(principal.workspace_id, flow_id)

    @put(
        "/{flow_id:str}",
        summary="Save the draft (If-Match: draft revision, to refuse overwriting a newer save)",
    )
    async def update(self, principal: Principal, flow_id: str, request: Request) -> FlowRead:
        revision = request.headers.get("if-match")
        return await flows_store.update_flow(
            principal.workspace_id,
            flow_id,
            await _json_body(request),
            expected_revision=int(revision) if revision and revision.isdigit() else None,
        )

    @delete("/{flow_id:str}")
    async def remove(self, principal: Principal, flow_id: str) -> None:
        await flows_store.delete_flow(principal.workspace_id, flow_id)

    @post("/{flow_id:str}/validate", status_code=200, summary="Validate the saved draft")
    async def validate_saved(self, principal: Principal, flow_id: str) -> ValidationReport:
        flow = await flows_store.get_flow(principal.workspace_id, flow_id)
        _, errors = validate_document(flow.document)
        return ValidationReport(valid=not errors, errors=msgspec.to_builtins(errors))

    @post("/{flow_id:str}/publish", status_code=200)
    async def publish(self, principal: Principal, flow_id: str) -> FlowRead:
        return await flows_store.publish(principal.workspace_id, flow_id, author=principal.email)

    @post("/{flow_id:str}/status", status_code=200, summary="Activate or pause")
    async def set_status(self, principal: Principal, flow_id: str, data: StatusRequest) -> FlowRead:
        return await flows_store.set_status(
            principal.workspace_id, flow_id, data.status, author=principal.email
        )

    @post("/{flow_id:str}/duplicate", status_code=201)
    async def duplicate(self, principal: Principal, flow_id: str) -> FlowRead:
        return await flows_store.duplicate_flow(principal.workspace_id, flow_id, author=principal.email)

    @get("/{flow_id:str}/versions")
    async def versions(self, principal: Principal, flow_id: str) -> builtins.list[FlowVersionRead]:
        return await flows_store.list_versions(principal.workspace_id, flow_id)

    @post("/{flow_id:str}/rollback", status_code=200)
    async def rollback(self, principal: Principal, flow_id: str, data: RollbackRequest) -> FlowRead:
        return await flows_store.rollback(principal.workspace_id, flow_id, data.version)

    @get("/{flow_id:str}/export", summary="The flow document, as `switchboard flows export` writes it")
    async def export(self, principal: Principal, flow_id: str) -> Response:
        doc = await flows_store.export_flow(principal.workspace_id, flow_id)
        filename = f"{flows_store.slugify(doc.name)}.flow.json"
        return Response(
            content=encode_document(doc),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
