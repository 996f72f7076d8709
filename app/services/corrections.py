"""Corrections become training data: "this should have been <action> / none" edits the flow's draft.

A correction adds the message to the intent trigger's `training_examples` (or, for "none", to the
`negative_examples` of the action that wrongly matched) in the flow's draft: the published version
keeps running until someone publishes, like any other edit. Who and when are kept in
`intent_corrections`, which is also the correction log the UI lists.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import msgspec
from piccolo.columns.combination import And, Where

from app.db.tables import IntentCorrection, Message
from app.services import flows_store, runs

NONE = "none"
MAX_TEXT_CHARS = 1000
"""A training example's longest text (flows.schema TrainingExample)."""


class CorrectionKind(str, Enum):
    EXAMPLE = "example"
    NEGATIVE = "negative"


class CorrectionError(ValueError):
    """The correction cannot apply; the message says what to send instead."""


class CorrectionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/corrections`: which action a message should have matched in a flow, or "none"."""

    flow_id: str
    node_id: str
    """The intent trigger that should have matched, or "none" (nothing should have)."""
    message: str | None = None
    """The customer's text; may be omitted when `run_id` names the run it came from."""
    run_id: str | None = None
    matched_node_id: str | None = None
    """With "none": the action that matched but should not have; defaults to the run's match."""
    language: str = ""


class CorrectionRead(msgspec.Struct):
    id: str
    flow_id: str
    node_id: str
    """The intent trigger whose examples (kind "example") or negative examples ("negative") grew."""
    kind: CorrectionKind
    text: str
    run_id: str | None
    matched_node_id: str | None
    draft_revision: int
    """The flow's draft revision that holds the correction (publish the flow to use it)."""
    created_by: str
    created_at: str


def _read(row: dict[str, Any]) -> CorrectionRead:
    return CorrectionRead(
        id=str(row["id"]),
        flow_id=str(row["flow"]),
        node_id=row["node_id"],
        kind=CorrectionKind(row["kind"]),
        text=row["text"],
        run_id=str(row["run_id"]) if row["run_id"] else None,
        matched_node_id=row["matched_node_id"],
        draft_revision=row["draft_revision"],
        created_by=row["created_by"],
        created_at=row["created_at"].isoformat(),
    )


async def _run_text_and_match(workspace_id: str, run_id: str, flow_id: str) -> tuple[str, str | None]:
    run = await runs.get_run(workspace_id, run_id)
    if run is None:
        raise CorrectionError(f"run {run_id!r} is not in this workspace")
    ids = [uuid.UUID(m) for m in run.message_ids]
    rows = (
        await Message.select(Message.text)
        .where((Message.id.is_in(ids)) & (Message.workspace == workspace_id))
        .order_by(Message.seq)
        if ids
        else []
    )
    text = "\n".join(r["text"] for r in rows if r["text"])
    match = ((run.result.get("summary") or run.result).get("detection") or {}).get("match") or {}
    matched = match.get("node_id") if str(match.get("flow_id")) == flow_id else None
    return text, matched


def _intent_match(document: dict[str, Any], node_id: str) -> dict[str, Any]:
    for node in document.get("nodes", []):
        if node.get("id") == node_id:
            match = (node.get("config") or {}).get("match") or {}
            if node.get("type") == "when.message_received" and match.get("kind") == "intent":
                return match
            raise CorrectionError(
                f"node {node_id!r} is not an intent trigger; pick the action's trigger node"
            )
    raise CorrectionError(f"the flow has no node {node_id!r}; pick one of its intent triggers or 'none'")


def _add(items: list[dict[str, Any]], text: str, language: str) -> bool:
    key = text.strip().casefold()
    if any(str(i.get("text", "")).strip().casefold() == key for i in items):
        return False
    items.append({"text": text, "language": language} if language else {"text": text})
    return True


def _remove(items: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    key = text.strip().casefold()
    return [i for i in items if str(i.get("text", "")).strip().casefold() != key]


async def add_correction(workspace_id: str, data: CorrectionCreate, *, author: str) -> CorrectionRead:
    """Put the message where it belongs in a new draft revision of the flow, and log who did it."""
    text, matched = (data.message or "", data.matched_node_id)
    if data.run_id:
        run_text, run_match = await _run_text_and_match(workspace_id, data.run_id, data.flow_id)
        text = text or run_text
        matched = matched or run_match
    text = text.strip()[:MAX_TEXT_CHARS]
    if not text:
        raise CorrectionError("message: give the customer's text, or a run_id whose messages have text")
    row = await flows_store._row(workspace_id, data.flow_id)
    document = flows_store.get_document_dict(row)
    if data.node_id == NONE:
        if not matched:
            raise CorrectionError(
                "matched_node_id: say which action matched but should not have (or give its run_id)"
            )
        kind, target = CorrectionKind.NEGATIVE, matched
    else:
        kind, target = CorrectionKind.EXAMPLE, data.node_id
    match = _intent_match(document, target)
    examples = list(match.get("training_examples") or [])
    negatives = list(match.get("negative_examples") or [])
    if kind is CorrectionKind.EXAMPLE:
        # The message now says "this action": it can no longer be one of its "not this" examples.
        match["negative_examples"] = _remove(negatives, text)
        _add(examples, text, data.language)
        match["training_examples"] = examples
    else:
        match["training_examples"] = _remove(examples, text)
        _add(negatives, text, data.language)
        match["negative_examples"] = negatives
    saved = await flows_store.update_flow(
        workspace_id, data.flow_id, document, expected_revision=row["draft_revision"]
    )
    correction = IntentCorrection(
        workspace=workspace_id,
        flow=row["id"],
        node_id=target,
        kind=kind.value,
        text=text,
        run_id=uuid.UUID(data.run_id) if data.run_id else None,
        matched_node_id=matched,
        draft_revision=saved.draft_revision,
        created_by=author,
        created_at=datetime.now(UTC),
    )
    await correction.save()
    rows = await IntentCorrection.select().where(IntentCorrection.id == correction.id)
    return _read(rows[0])


async def list_corrections(
    workspace_id: str, *, flow_id: str | None = None, limit: int = 100
) -> list[CorrectionRead]:
    """The correction log, newest first."""
    where: Where | And = IntentCorrection.workspace == workspace_id
    if flow_id:
        where = where & (IntentCorrection.flow == flows_store._to_uuid(flow_id))
    rows = (
        await IntentCorrection.select()
        .where(where)
        .order_by(IntentCorrection.created_at, ascending=False)
        .limit(max(1, min(limit, 500)))
    )
    return [_read(r) for r in rows]
