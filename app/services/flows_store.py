"""Flows of a workspace: drafts, immutable published versions, import/export, compiled plans.

Save keeps a draft; publish freezes the draft as the next version and makes it the one
that runs; rollback makes an older version run again. Workers cache compiled plans per
(flow, version) and notice changes through a per-workspace revision counter in Redis,
so a publish takes effect in every worker on its next turn.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis

from app.db.tables import Flow, FlowVersion, Secret
from app.services import secrets
from app.services.cache import BoundedCache
from app.services.values import iso
from flows.graph import CompiledFlow, compile_flow
from flows.nodes.registry import NODE_TYPES, summaries
from flows.overlap import MessageTrigger, Overlap, find_overlaps, message_triggers
from flows.schema import SCHEMA_V1, FlowDocument, FlowStatus, document_to_dict
from flows.validate import FlowError, check_draft, errors_by_node, validate_document

log = logging.getLogger(__name__)

SECRET_REF_PREFIX = "secret://"


class FlowRead(msgspec.Struct):
    id: str
    name: str
    description: str
    status: FlowStatus
    priority: int
    active_version: int | None
    latest_version: int
    draft_revision: int
    created_at: str
    updated_at: str
    last_run_at: str | None
    document: dict[str, Any]
    version: int | None = None  # the active version (DESIGN's `{id, version, ...}`)
    # What is still wrong with the draft (a draft saves in any state; only Publish needs none):
    # every error with node id and field, and the same messages grouped per node for the editor.
    errors: list[FlowError] = []
    node_errors: dict[str, list[str]] = {}
    summaries: dict[str, str] = {}  # node id -> the line its card shows (from its node type)
    # Message triggers of this flow that also fire an active flow ("'order' also fires Hand-off").
    overlaps: list[Overlap] = []


class FlowVersionRead(msgspec.Struct):
    version: int
    created_by: str
    created_at: str
    active: bool


class FlowInvalid(Exception):
    """The document has errors; `.errors` names node, field and what to do."""

    def __init__(self, errors: list[FlowError]) -> None:
        super().__init__(f"{len(errors)} error(s) in the flow document")
        self.errors = errors


class FlowNotFound(Exception):
    pass


class OnExisting(str, enum.Enum):
    """What an import does with a document whose name a flow of the workspace already has."""

    REPLACE = "replace"
    """The existing flow takes the document as its next version (older versions stay in its history)."""
    COPY = "copy"
    """Both are kept: the document becomes a new flow named "<name> (copy)", paused."""


class ImportResult(msgspec.Struct):
    created: list[str]
    errors: list[dict[str, Any]]  # [{"index", "name", "errors": [FlowError...]}]
    missing_secrets: list[str]
    replaced: list[str] = msgspec.field(default_factory=list)
    conflicts: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """[{"index", "name", "existing_ids"}]: names that exist, when no OnExisting was given (nothing changed)."""
    outcomes: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """Per document, in order: {"index", "id", "name", "action": created|replaced|copied}."""
    paused: list[str] = msgspec.field(default_factory=list)
    """Other active flows of a replaced name, paused so that one flow answers."""

    def conflict_message(self) -> str:
        """Why nothing was imported, naming the flows (the caller adds how to choose)."""
        existing = [f"“{c['name']}”" for c in self.conflicts if c["existing_ids"]]
        twice = [f"“{c['name']}”" for c in self.conflicts if not c["existing_ids"]]
        parts = []
        if existing:
            verb = "already exists" if len(existing) == 1 else "already exist"
            parts.append(f"{', '.join(existing)} {verb} in this workspace")
        if twice:
            parts.append(f"{', '.join(twice)} appear{'s' if len(twice) == 1 else ''} twice in this import")
        return "; ".join(parts) + ": importing as is would make two active flows answer the same messages"


def _to_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise FlowNotFound(value) from exc


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "flow"


def revision_key(workspace_id: str) -> str:
    return f"sb:flows:rev:{workspace_id}"


class Revisions:
    """The per-workspace revision counters (`sb:flows:rev:{workspace}`) that tell workers to reload."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def bump(self, workspace_id: str) -> None:
        await self.redis.incr(revision_key(workspace_id))

    async def current(self, workspace_id: str) -> int:
        return int(await self.redis.get(revision_key(workspace_id)) or 0)

    async def ensure(self, workspace_id: str) -> int:
        """The revision, starting the counter at 1 when Redis has none (a first load, or Redis lost it)."""
        await self.redis.set(revision_key(workspace_id), 1, nx=True)
        return int(await self.redis.get(revision_key(workspace_id)) or 1)


_revisions: Revisions | None = None


def use_revisions(revisions: Revisions) -> None:
    """Bind the process's counters; the composition roots (app.roots) call this once.

    The flow-editing functions of this module are called as plain functions by ui/ and
    app/api (sixteen call sites), so their one Redis need is bound here at start-up; the
    worker's hot path (PlanCache) gets its Revisions through its constructor.
    """
    global _revisions  # noqa: PLW0603  (bound once at start-up; see the docstring)
    _revisions = revisions


async def _bump_revision(workspace_id: str) -> None:
    if _revisions is None:
        raise RuntimeError(
            "flow revisions are not bound: the process's root calls use_revisions() at start-up"
        )
    await _revisions.bump(workspace_id)


def parse_document(raw: bytes | str | dict) -> FlowDocument:
    doc, errors = validate_document(raw)
    if errors or doc is None:
        raise FlowInvalid(errors)
    return doc


# --- secrets inside documents -------------------------------------------------------


def _secret_slots(doc_dict: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(holder, key) of every secret the node types declare (`NodeType.secrets`), in any draft."""
    slots = []
    for node in doc_dict.get("nodes") or []:
        spec = NODE_TYPES.get(str(node.get("type"))) if isinstance(node, dict) else None
        if spec is None:
            continue
        for path in spec.secrets:
            holder: Any = node.get("config")
            *parents, key = path.split(".")
            for part in parents:
                holder = holder.get(part) if isinstance(holder, dict) else None
            if isinstance(holder, dict):
                slots.append((holder, key))
    return slots


async def _store_secrets(workspace_id: str, doc_dict: dict[str, Any]) -> dict[str, Any]:
    """Swap clear secrets for `secret://<id>` references (the clear value goes to `secrets`)."""
    for holder, key in _secret_slots(doc_dict):
        value = holder.get(key) or ""
        if isinstance(value, str) and value and not value.startswith(SECRET_REF_PREFIX):
            row = Secret(
                workspace=workspace_id, name=str(holder.get("type", key)), value_enc=secrets.encrypt(value)
            )
            await row.save()
            holder[key] = f"{SECRET_REF_PREFIX}{row.id}"
        elif not isinstance(value, str):
            holder[key] = ""  # a secret is text; anything else is dropped rather than stored in clear
    return doc_dict


async def missing_secret_refs(workspace_id: str, doc_dict: dict[str, Any]) -> list[str]:
    refs = {
        holder[key]
        for holder, key in _secret_slots(doc_dict)
        if str(holder.get(key, "")).startswith(SECRET_REF_PREFIX)
    }
    missing = []
    for ref in sorted(refs):
        sid = ref[len(SECRET_REF_PREFIX) :]
        try:
            exists = await Secret.exists().where(
                (Secret.id == uuid.UUID(sid)) & (Secret.workspace == workspace_id)
            )
        except ValueError:
            exists = False
        if not exists:
            missing.append(ref)
    return missing


async def resolve_secret(workspace_id: str, ref: str) -> str:
    """The clear value of a `secret://<id>` reference ('' when it is not set in this workspace)."""
    if not ref.startswith(SECRET_REF_PREFIX):
        return ref
    try:
        sid = uuid.UUID(ref[len(SECRET_REF_PREFIX) :])
    except ValueError:
        return ""
    row = (
        await Secret.select(Secret.value_enc)
        .where((Secret.id == sid) & (Secret.workspace == workspace_id))
        .first()
    )
    return secrets.decrypt(row["value_enc"]) if row else ""


async def set_secret(workspace_id: str, ref: str, value: str) -> str:
    """Give a reference from another workspace's export a value here; returns the new reference."""
    row = Secret(workspace=workspace_id, name="imported", value_enc=secrets.encrypt(value))
    await row.save()
    return f"{SECRET_REF_PREFIX}{row.id}"


def _replace_refs(doc_dict: dict[str, Any], mapping: dict[str, str]) -> None:
    for holder, key in _secret_slots(doc_dict):
        if holder.get(key) in mapping:
            holder[key] = mapping[holder[key]]


# --- reads ----------------------------------------------------------------------


def _read(row: dict[str, Any]) -> FlowRead:
    document = dict(row["draft"])
    document["status"] = row["status"]
    _, errors = validate_document(document)
    return FlowRead(
        id=str(row["id"]),
        name=row["name"],
        description=row["description"],
        status=FlowStatus(row["status"]),
        priority=row["priority"],
        active_version=row["active_version"],
        latest_version=row["latest_version"],
        draft_revision=row["draft_revision"],
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
        last_run_at=iso(row["last_run_at"]),
        document=document,
        version=row["active_version"],
        errors=errors,
        node_errors=errors_by_node(errors),
        summaries=summaries(document),
    )


async def _row(workspace_id: str, flow_id: str) -> dict[str, Any]:
    row = await Flow.select().where((Flow.id == _to_uuid(flow_id)) & (Flow.workspace == workspace_id)).first()
    if row is None:
        raise FlowNotFound(flow_id)
    return row


def _triggers(flow: FlowRead) -> list[MessageTrigger]:
    return message_triggers(flow.id, flow.name, flow.document)


def _with_overlaps(flow: FlowRead, active: list[MessageTrigger]) -> FlowRead:
    flow.overlaps = find_overlaps(_triggers(flow), active)
    return flow


async def get_flow(workspace_id: str, flow_id: str) -> FlowRead:
    flow = _read(await _row(workspace_id, flow_id))
    rows = await Flow.select(Flow.id, Flow.name, Flow.draft).where(
        (Flow.workspace == workspace_id) & (Flow.status == FlowStatus.ACTIVE.value) & (Flow.id != flow.id)
    )
    active = [t for r in rows for t in message_triggers(str(r["id"]), r["name"], r["draft"])]
    return _with_overlaps(flow, active)


async def list_flows(workspace_id: str) -> list[FlowRead]:
    """Every flow, priority first, each with the active flows its message triggers overlap."""
    rows = (
        await Flow.select()
        .where(Flow.workspace == workspace_id)
        .order_by(Flow.priority, ascending=False)
        .order_by(Flow.name)
    )
    flows = [_read(r) for r in rows]
    active = [t for f in flows if f.status is FlowStatus.ACTIVE for t in _triggers(f)]
    return [_with_overlaps(f, active) for f in flows]


async def export_flow(workspace_id: str, flow_id: str) -> FlowDocument:
    """The DESIGN document of the flow: its draft, with its status; secrets stay references."""
    return parse_document(get_document_dict(await _row(workspace_id, flow_id)))


def get_document_dict(row: dict[str, Any]) -> dict[str, Any]:
    document = dict(row["draft"])
    document["status"] = row["status"]
    return document


# --- writes ---------------------------------------------------------------------


async def create_flow(workspace_id: str, raw: bytes | str | dict, *, author: str) -> FlowRead:
    doc = parse_document(raw)
    doc_dict = await _store_secrets(workspace_id, document_to_dict(doc))
    wants_active = doc.status is FlowStatus.ACTIVE
    doc_dict["status"] = FlowStatus.DRAFT.value
    flow = Flow(
        workspace=workspace_id,
        name=doc.name,
        slug=slugify(doc.name),
        description=doc.description,
        status=FlowStatus.DRAFT.value,
        priority=doc.priority,
        draft=doc_dict,
    )
    await flow.save()
    if wants_active:
        return await publish(workspace_id, str(flow.id), author=author)
    return await get_flow(workspace_id, str(flow.id))


def starter_document(name: str) -> dict[str, Any]:
    """A new flow: a "Message received (any)" trigger, so it is valid from its first save."""
    return {
        "schema": SCHEMA_V1,
        "name": (name.strip() or "Untitled flow")[:200],
        "description": "",
        "status": FlowStatus.DRAFT.value,
        "priority": 0,
        "nodes": [
            {
                "id": "n1",
                "type": "when.message_received",
                "config": NODE_TYPES["when.message_received"].starting_config,
                "position": {"x": 80, "y": 120},
            }
        ],
        "edges": [],
    }


async def update_flow(
    workspace_id: str, flow_id: str, raw: bytes | str | dict, *, expected_revision: int | None = None
) -> FlowRead:
    """Save the draft in whatever state the graph is in; the answer lists what is still wrong.

    Refused only when the editor could not load it back (not JSON, no name, nodes without ids).
    The status in the document can pause or resume a published flow.
    """
    row = await _row(workspace_id, flow_id)
    draft = check_draft(raw)
    if draft.document is None:
        raise FlowInvalid(draft.blocking)
    doc_dict = await _store_secrets(workspace_id, dict(draft.document))
    wanted = doc_dict.get("status")
    status = row["status"]
    if wanted == FlowStatus.PAUSED.value and status == FlowStatus.ACTIVE.value:
        status = FlowStatus.PAUSED.value
    elif wanted == FlowStatus.ACTIVE.value and status == FlowStatus.PAUSED.value:
        status = FlowStatus.ACTIVE.value
    doc_dict["status"] = status
    where = (Flow.id == row["id"]) & (Flow.workspace == workspace_id)
    if expected_revision is not None:
        where = where & (Flow.draft_revision == expected_revision)
    updated = (
        await Flow.update(
            {
                Flow.draft: doc_dict,
                Flow.name: doc_dict["name"],
                Flow.slug: slugify(doc_dict["name"]),
                Flow.description: doc_dict.get("description", ""),
                Flow.priority: doc_dict.get("priority", 0),
                Flow.status: status,
                Flow.draft_revision: Flow.draft_revision + 1,
                Flow.updated_at: datetime.now(UTC),
            }
        )
        .where(where)
        .returning(Flow.id)
    )
    if not updated:
        raise FlowInvalid(
            [
                FlowError(
                    node_id=None,
                    field="draft_revision",
                    code="conflict",
                    message="someone saved this flow after you opened it; reload and apply your change again",
                )
            ]
        )
    if status != row["status"]:
        await _bump_revision(workspace_id)
    return await get_flow(workspace_id, flow_id)


async def set_status(workspace_id: str, flow_id: str, status: FlowStatus, *, author: str) -> FlowRead:
    """Activate (publishing first if never published) or pause a flow."""
    row = await _row(workspace_id, flow_id)
    if status is FlowStatus.ACTIVE and row["active_version"] is None:
        return await publish(workspace_id, flow_id, author=author)
    if status is FlowStatus.DRAFT:
        raise FlowInvalid(
            [
                FlowError(
                    node_id=None,
                    field="status",
                    code="bad_status",
                    message="a flow goes back to draft only by deleting it; pause it instead",
                )
            ]
        )
    await Flow.update({Flow.status: status.value, Flow.updated_at: datetime.now(UTC)}).where(
        (Flow.id == row["id"]) & (Flow.workspace == workspace_id)
    )
    await _bump_revision(workspace_id)
    return await get_flow(workspace_id, flow_id)


async def publish(workspace_id: str, flow_id: str, *, author: str) -> FlowRead:
    row = await _row(workspace_id, flow_id)
    doc = parse_document(get_document_dict(row))  # a draft saved by an older release is checked again
    document = document_to_dict(doc)
    document["status"] = FlowStatus.ACTIVE.value
    async with Flow._meta.db.transaction():
        locked = await Flow.raw("SELECT latest_version FROM flows WHERE id = {} FOR UPDATE", row["id"])
        version = locked[0]["latest_version"] + 1
        await FlowVersion(
            workspace=workspace_id, flow=row["id"], version=version, document=document, created_by=author
        ).save()
        await Flow.update(
            {
                Flow.latest_version: version,
                Flow.active_version: version,
                Flow.status: FlowStatus.ACTIVE.value,
                Flow.draft: document,
                Flow.updated_at: datetime.now(UTC),
            }
        ).where(Flow.id == row["id"])
    await _bump_revision(workspace_id)
    log.info("flow published", extra={"flow_id": flow_id, "version": version, "author": author})
    return await get_flow(workspace_id, flow_id)


async def list_versions(workspace_id: str, flow_id: str) -> list[FlowVersionRead]:
    row = await _row(workspace_id, flow_id)
    versions = (
        await FlowVersion.select(FlowVersion.version, FlowVersion.created_by, FlowVersion.created_at)
        .where((FlowVersion.flow == row["id"]) & (FlowVersion.workspace == workspace_id))
        .order_by(FlowVersion.version, ascending=False)
    )
    return [
        FlowVersionRead(
            version=v["version"],
            created_by=v["created_by"],
            created_at=iso(v["created_at"]),
            active=v["version"] == row["active_version"],
        )
        for v in versions
    ]


async def get_version_document(workspace_id: str, flow_id: str, version: int) -> dict[str, Any]:
    row = await _row(workspace_id, flow_id)
    found = (
        await FlowVersion.select(FlowVersion.document)
        .where(
            (FlowVersion.flow == row["id"])
            & (FlowVersion.version == version)
            & (FlowVersion.workspace == workspace_id)
        )
        .first()
    )
    if found is None:
        raise FlowNotFound(f"{flow_id} version {version}")
    return found["document"]


async def rollback(workspace_id: str, flow_id: str, version: int) -> FlowRead:
    """Make an older version the one that runs again; the draft becomes that version."""
    document = await get_version_document(workspace_id, flow_id, version)
    await Flow.update(
        {
            Flow.active_version: version,
            Flow.status: FlowStatus.ACTIVE.value,
            Flow.draft: document,
            Flow.draft_revision: Flow.draft_revision + 1,
            Flow.updated_at: datetime.now(UTC),
        }
    ).where((Flow.id == _to_uuid(flow_id)) & (Flow.workspace == workspace_id))
    await _bump_revision(workspace_id)
    return await get_flow(workspace_id, flow_id)


async def delete_flow(workspace_id: str, flow_id: str) -> None:
    row = await _row(workspace_id, flow_id)
    await Flow.delete().where((Flow.id == row["id"]) & (Flow.workspace == workspace_id))
    await _bump_revision(workspace_id)


async def duplicate_flow(workspace_id: str, flow_id: str, *, author: str) -> FlowRead:
    document = get_document_dict(await _row(workspace_id, flow_id))
    document["name"] = f"{document['name']} (copy)"[:200]
    document["status"] = FlowStatus.DRAFT.value
    return await create_flow(workspace_id, document, author=author)


def _copy_name(name: str, taken: set[str]) -> str:
    candidate, n = f"{name} (copy)", 2
    while slugify(candidate) in taken:
        candidate, n = f"{name} (copy {n})", n + 1
    return candidate[:200]


async def import_flows(
    workspace_id: str,
    documents: list[Any],
    *,
    author: str,
    secret_values: dict[str, str] | None = None,
    on_existing: OnExisting | None = None,
) -> ImportResult:
    """Create every document, or none when one is invalid (errors per document and node).

    A document whose name (by slug) a flow of the workspace has is a conflict: without
    `on_existing` nothing is imported and the conflicts are returned, so an import never
    silently makes two active flows answer the same messages.
    """
    parsed: list[FlowDocument] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(documents):
        doc, doc_errors = validate_document(raw)
        if doc_errors or doc is None:
            name = raw.get("name") if isinstance(raw, dict) else None
            errors.append(
                {"index": index, "name": name, "errors": [msgspec.to_builtins(e) for e in doc_errors]}
            )
        else:
            parsed.append(doc)
    if errors:
        return ImportResult(created=[], errors=errors, missing_secrets=[])
    existing: dict[str, list[dict[str, Any]]] = {}
    for row in (
        await Flow.select(Flow.id, Flow.slug, Flow.status, Flow.updated_at)
        .where(Flow.workspace == workspace_id)
        .order_by(Flow.updated_at, ascending=False)
    ):
        existing.setdefault(row["slug"], []).append(row)
    conflicts, seen = [], set()
    for index, doc in enumerate(parsed):
        slug = slugify(doc.name)
        if slug in existing or slug in seen:
            ids = [str(r["id"]) for r in existing.get(slug, [])]
            conflicts.append({"index": index, "name": doc.name, "existing_ids": ids})
        seen.add(slug)
    if conflicts and on_existing is None:
        return ImportResult(created=[], errors=[], missing_secrets=[], conflicts=conflicts)
    mapping: dict[str, str] = {}
    for ref, value in (secret_values or {}).items():
        mapping[ref] = await set_secret(workspace_id, ref, value)
    result = ImportResult(created=[], errors=[], missing_secrets=[])
    missing: list[str] = []
    for index, doc in enumerate(parsed):
        doc_dict = document_to_dict(doc)
        _replace_refs(doc_dict, mapping)
        missing.extend(await missing_secret_refs(workspace_id, doc_dict))
        slug = slugify(doc.name)
        matches = existing.get(slug, [])
        if matches and on_existing is OnExisting.REPLACE:
            flow = await _replace(workspace_id, str(matches[0]["id"]), doc_dict, author=author)
            for other in matches[1:]:
                if other["status"] == FlowStatus.ACTIVE.value:
                    await set_status(workspace_id, str(other["id"]), FlowStatus.PAUSED, author=author)
                    result.paused.append(str(other["id"]))
            result.replaced.append(flow.id)
            action = "replaced"
        elif matches:
            doc_dict["name"] = _copy_name(doc.name, set(existing))
            wants_active = doc_dict["status"] == FlowStatus.ACTIVE.value
            doc_dict["status"] = FlowStatus.DRAFT.value
            flow = await create_flow(workspace_id, doc_dict, author=author)
            if wants_active:
                flow = await set_status(workspace_id, flow.id, FlowStatus.PAUSED, author=author)
            result.created.append(flow.id)
            action = "copied"
        else:
            flow = await create_flow(workspace_id, doc_dict, author=author)
            result.created.append(flow.id)
            action = "created"
        existing.setdefault(slugify(flow.name), []).insert(
            0, {"id": flow.id, "slug": slugify(flow.name), "status": flow.status.value}
        )
        result.outcomes.append({"index": index, "id": flow.id, "name": flow.name, "action": action})
    result.missing_secrets = sorted(set(missing))
    return result


async def _replace(workspace_id: str, flow_id: str, doc_dict: dict[str, Any], *, author: str) -> FlowRead:
    """The document becomes the flow's draft, then its running version when the document is active."""
    wants_active = doc_dict["status"] == FlowStatus.ACTIVE.value
    flow = await update_flow(workspace_id, flow_id, doc_dict)
    if wants_active:
        return await publish(workspace_id, flow_id, author=author)
    if flow.status is FlowStatus.ACTIVE:
        return await set_status(workspace_id, flow_id, FlowStatus.PAUSED, author=author)
    return flow


# --- compiled plans for the worker ---------------------------------------------------


MAX_CACHED_PLANS = 2048
"""Compiled flow versions a process keeps (least recently used go first; a miss recompiles)."""
MAX_CACHED_WORKSPACES = 10_000
"""Workspaces whose active plan list a process keeps."""


class PlanCache:
    """Active compiled plans per workspace, reloaded when the workspace's revision changes."""

    def __init__(
        self,
        revisions: Revisions,
        *,
        max_plans: int = MAX_CACHED_PLANS,
        max_workspaces: int = MAX_CACHED_WORKSPACES,
    ) -> None:
        self.revisions = revisions
        # Bounded: every published version used to stay compiled for the life of the process.
        self._compiled: BoundedCache[tuple[str, int], CompiledFlow] = BoundedCache(max_entries=max_plans)
        self._active: BoundedCache[str, tuple[int, list[CompiledFlow]]] = BoundedCache(
            max_entries=max_workspaces
        )

    def __len__(self) -> int:
        """Compiled versions held now (for diagnostics: bounded by max_plans)."""
        return len(self._compiled)

    async def active_plans(self, workspace_id: str, *, revision: int | None = None) -> list[CompiledFlow]:
        """The plans; `revision` is the workspace's revision when the caller already read it."""
        if revision is None:
            revision = await self.revisions.current(workspace_id)
        cached = self._active.get(workspace_id)
        if cached and cached[0] == revision and revision != 0:
            return cached[1]
        rows = await FlowVersion.raw(
            "SELECT f.id, f.active_version, v.document FROM flows f "
            "JOIN flow_versions v ON v.flow = f.id AND v.version = f.active_version "
            "WHERE f.workspace = {} AND f.status = 'active'",
            uuid.UUID(workspace_id),
        )
        plans = []
        for row in rows:
            key = (str(row["id"]), row["active_version"])
            plan = self._compiled.get(key)
            if plan is None:
                doc, errs = validate_document(row["document"])
                if doc is None:
                    log.error(
                        "active flow version is invalid; skipped",
                        extra={"flow_id": key[0], "version": key[1], "errors": [e.message for e in errs]},
                    )
                    continue
                plan = compile_flow(doc, flow_id=key[0], version=key[1])
                self._compiled.put(key, plan)
            plans.append(plan)
        if revision == 0:
            revision = await self.revisions.ensure(workspace_id)
        self._active.put(workspace_id, (revision, plans))
        return plans

    def plan(self, flow_id: str, version: int) -> CompiledFlow | None:
        return self._compiled.get((flow_id, version))

    async def plan_for(self, workspace_id: str, flow_id: str, version: int) -> CompiledFlow | None:
        """A specific version's plan (for resuming a chain after a webhook retry or a confirmation)."""
        plan = self._compiled.get((flow_id, version))
        if plan is not None:
            return plan
        try:
            document = await get_version_document(workspace_id, flow_id, version)
        except FlowNotFound:
            return None
        doc, _ = validate_document(document)
        if doc is None:
            return None
        plan = compile_flow(doc, flow_id=flow_id, version=version)
        self._compiled.put((flow_id, version), plan)
        return plan
