"""The flow editor page, its node forms (rendered per node type, checked by flows/) and its versions."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template

from app.services import actions, auth, flows_store
from flows.nodes.registry import NODE_TYPES, summaries
from ui.forms import FieldError, check_node_config, form_to_config, prune_match
from ui.palette import form_values, node_types_json, template_names
from ui.render import fragment, is_htmx, page


def _json_list(raw: str | None) -> list[Any]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _node_form(
    request: Request,
    *,
    node_id: str,
    type_: str,
    cfg: dict[str, Any],
    variables: list[str],
    errors: list[FieldError],
    applied: bool,
    headers: dict[str, str] | None = None,
    status_code: int = 200,
    advice: actions.ThresholdAdvice | None = None,
) -> Template:
    node_type = NODE_TYPES.get(type_)
    if node_type is None:
        raise NotFoundException(f"Unknown node type {type_!r}.")
    by_field: dict[str, str] = {}
    general: list[str] = []
    for e in errors:
        if e.field:
            by_field[e.field] = (by_field[e.field] + " " + e.message) if e.field in by_field else e.message
        else:
            general.append(e.message)
    return fragment(
        request,
        "partials/node_form.html",
        headers=headers,
        status_code=status_code,
        node_id=node_id,
        node_type=node_type,
        cfg=form_values(node_type, cfg),
        errors=by_field,
        general_errors=general,
        names=template_names(variables),
        variables_json=json.dumps(variables),
        applied=applied,
        advice=advice,
    )


async def _flow(principal: auth.Principal, flow_id: str) -> flows_store.FlowRead:
    try:
        return await flows_store.get_flow(principal.workspace_id, flow_id)
    except flows_store.FlowNotFound as exc:
        raise NotFoundException("This flow does not exist (deleted?).") from exc


async def _advice(request: Request, workspace_id: str, cfg: dict[str, Any]) -> actions.ThresholdAdvice | None:
    """For an intent trigger: what its examples score, shown beside the confidence threshold."""
    match = cfg.get("match")
    if not isinstance(match, dict) or match.get("kind") != "intent":
        return None
    threshold = match.get("confidence_threshold", 0.8)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        threshold = 0.8
    services = request.app.state.services
    return await actions.threshold_advice(
        workspace_id,
        match,
        threshold=float(threshold),
        plans=services.plans,
        understanding=services.understanding,
    )


class EditorController(Controller):
    path = "/"

    @get("/flows/{flow_id:str}/edit", name="editor")
    async def editor(self, request: Request, principal: auth.Principal, flow_id: str) -> Template:
        flow = await _flow(principal, flow_id)
        document = flows_store.get_document_dict({"draft": flow.document, "status": flow.status.value})
        return page(
            request,
            "pages/editor.html",
            nav="flows",
            flow=flow,
            node_types_json=node_types_json(),
            document_json=json.dumps(document).replace("</", "<\\/"),
            summaries_json=json.dumps(summaries(document)).replace("</", "<\\/"),
            draft_errors_json=json.dumps(msgspec.to_builtins(flow.errors)).replace("</", "<\\/"),
        )

    @post("/editor/node-form", name="node_form")
    async def node_form(self, request: Request, principal: auth.Principal) -> Template:
        """The properties form of one node, filled from the editor's current (maybe unsaved) config."""
        form = await request.form()
        try:
            cfg = json.loads(form.get("config") or "{}")
        except ValueError:
            cfg = {}
        errors = [
            FieldError(_strip(e.get("field")), e.get("message", ""))
            for e in _json_list(form.get("errors"))
            if isinstance(e, dict)
        ]
        cfg = cfg if isinstance(cfg, dict) else {}
        return _node_form(
            request,
            node_id=form.get("node_id", ""),
            type_=form.get("type", ""),
            cfg=cfg,
            variables=[str(v) for v in _json_list(form.get("variables"))],
            errors=errors,
            applied=False,
            advice=await _advice(request, principal.workspace_id, cfg),
        )

    @post("/editor/node-form/save", name="node_form_save")
    async def node_form_save(self, request: Request, principal: auth.Principal) -> Template:
        """Apply a node form: the editor receives the config and its problems via HX-Trigger.

        A config with problems answers 422 with its reasons in the form, and is applied too
        (drafts keep whatever state the graph is in): the node shows what to fix until fixed.
        """
        form = await request.form()
        node_id, type_ = form.get("_node_id", ""), form.get("_type", "")
        if type_ not in NODE_TYPES:
            raise NotFoundException(f"Unknown node type {type_!r}.")
        variables = [str(v) for v in _json_list(form.get("_variables"))]
        cfg, errors = form_to_config(form.multi_items())
        ref = form.get("_secret_ref")
        if ref and isinstance(cfg.get("auth"), dict) and not cfg["auth"].get("secret"):
            cfg["auth"]["secret"] = ref  # write-only field left empty: keep the stored secret
        normalised = None
        if not errors:
            normalised, errors = check_node_config(node_id, type_, cfg)
        applied = normalised if normalised is not None else prune_match(cfg)
        detail = {
            "node_id": node_id,
            "config": applied,
            "summary": NODE_TYPES[type_].summary(applied),
            "errors": msgspec.to_builtins(errors),
        }
        return _node_form(
            request,
            node_id=node_id,
            type_=type_,
            cfg=applied,
            variables=variables,
            errors=errors,
            applied=True,
            status_code=422 if errors else 200,  # applied all the same: the node shows what to fix
            headers={"HX-Trigger": json.dumps({"sb:node-config": detail})},
            advice=await _advice(request, principal.workspace_id, applied),
        )

    @get("/flows/{flow_id:str}/versions", name="flow_versions")
    async def versions(self, request: Request, principal: auth.Principal, flow_id: str) -> Template:
        """Published versions, newest first, each with Roll back (the editor's Versions tab)."""
        flow = await _flow(principal, flow_id)
        versions = await flows_store.list_versions(principal.workspace_id, flow_id)
        return page(
            request,
            "pages/versions.html",
            partial="partials/versions.html",
            nav="flows",
            flow=flow,
            versions=versions,
            rolled_back=None,
        )

    @post("/flows/{flow_id:str}/rollback", name="flow_rollback")
    async def rollback(
        self, request: Request, principal: auth.Principal, flow_id: str
    ) -> Template | Redirect:
        """Make an older version run again; its document becomes the draft (the editor reloads it)."""
        form = await request.form()
        await _flow(principal, flow_id)
        try:
            version = int(form.get("version") or "")
            flow = await flows_store.rollback(principal.workspace_id, flow_id, version)
        except (ValueError, flows_store.FlowNotFound) as exc:
            raise NotFoundException("That version does not exist; reload the list of versions.") from exc
        if not is_htmx(request):
            return Redirect(path=f"/flows/{flow_id}/edit")
        versions = await flows_store.list_versions(principal.workspace_id, flow_id)
        return fragment(
            request,
            "partials/versions.html",
            headers={"HX-Trigger": json.dumps({"sb:rolled-back": {"version": version}})},
            flow=flow,
            versions=versions,
            rolled_back=version,
        )


def _strip(field: Any) -> str:
    text = str(field or "")
    return text[len("config.") :] if text.startswith("config.") else text
