"""External actions of a workspace: the catalogue with counters, and the flow the action builder creates."""

from __future__ import annotations

from typing import Any

import msgspec

from app.services import flows_store, runs
from app.services.ai.understanding import Understanding
from flows.graph import external_actions
from flows.nodes.registry import NODE_TYPES
from flows.runtime import IntentCandidate
from flows.schema import SCHEMA_V1, FlowStatus, TrainingExample
from flows.validate import FlowError, validate_document

TRIGGER_TYPE = "when.message_received"


class ActionItem(msgspec.Struct, kw_only=True):
    """An intent trigger and the node it runs, as the interpreter finds it (flows.graph.external_actions)."""

    flow: flows_store.FlowRead
    trigger: dict[str, Any]
    match: dict[str, Any]
    action: dict[str, Any] | None  # the first external-action node reachable after the trigger
    stats: runs.ActionStatsRead | None = None

    @property
    def webhook(self) -> dict[str, Any] | None:  # what the pages call the action node
        return self.action


def flow_actions(flow: flows_store.FlowRead) -> list[ActionItem]:
    nodes = {n.get("id"): n for n in flow.document.get("nodes") or [] if isinstance(n, dict)}
    return [
        ActionItem(
            flow=flow,
            trigger=nodes[found.trigger_id],
            match=nodes[found.trigger_id]["config"]["match"],
            action=nodes.get(found.action_id) if found.action_id else None,
        )
        for found in external_actions(flow.document)
    ]


async def list_actions(workspace_id: str, *, with_stats: bool = True) -> list[ActionItem]:
    """Every external action of the workspace, with its counters (one query for all of them)."""
    items = [a for f in await flows_store.list_flows(workspace_id) for a in flow_actions(f)]
    if with_stats and items:
        keys = [(a.flow.id, (a.action or a.trigger)["id"]) for a in items]
        stats = await runs.action_stats(workspace_id, keys)
        for item, key in zip(items, keys, strict=True):
            item.stats = stats[key]
    return items


def blank_action() -> dict[str, Any]:
    """The builder's empty form: an intent trigger and a webhook, with the webhook's defaults."""
    webhook = NODE_TYPES["action.call_webhook"]
    return {
        "trigger": {
            "match": {
                "kind": "intent",
                "display_name": "",
                "description": "",
                "confidence_threshold": 0.8,
                "training_examples": [],
                "variables": [],
            }
        },
        "webhook": msgspec.to_builtins(webhook.config(url="")),
    }


def action_document(name: str, trigger: dict[str, Any], webhook: dict[str, Any]) -> dict[str, Any]:
    """The flow the builder creates: an intent trigger connected to a webhook."""
    return {
        "schema": SCHEMA_V1,
        "name": name,
        "description": trigger.get("match", {}).get("description", ""),
        "status": FlowStatus.DRAFT.value,
        "priority": 10,
        "nodes": [
            {"id": "n1", "type": TRIGGER_TYPE, "config": trigger, "position": {"x": 80, "y": 120}},
            {"id": "n2", "type": "action.call_webhook", "config": webhook, "position": {"x": 400, "y": 120}},
        ],
        "edges": [{"from": "n1", "to": "n2"}],
    }


def check_action(name: str, trigger: dict[str, Any], webhook: dict[str, Any]) -> list[FlowError]:
    """Every problem of the flow the builder would create, with graph rules (confirmation needs the intent)."""
    _, errors = validate_document(action_document(name or "Untitled action", trigger, webhook))
    return errors


async def create_action(
    workspace_id: str, trigger: dict[str, Any], webhook: dict[str, Any], *, activate: bool, author: str
) -> flows_store.FlowRead:
    name = trigger.get("match", {}).get("display_name") or ""
    flow = await flows_store.create_flow(workspace_id, action_document(name, trigger, webhook), author=author)
    if activate:
        flow = await flows_store.publish(workspace_id, flow.id, author=author)
    return flow


class ThresholdAdvice(msgspec.Struct, frozen=True, kw_only=True):
    """What an intent's own examples score when each is left out of training (what a new phrasing may score)."""

    scored: int = 0
    lowest: float = 0.0
    median: float = 0.0
    highest: float = 0.0
    passing: int = 0  # held-out examples at or above the threshold
    note: str = ""


MAX_HELD_OUT = 12


async def threshold_advice(
    workspace_id: str,
    match: dict[str, Any],
    *,
    threshold: float,
    plans: flows_store.PlanCache,
    understanding: Understanding,
) -> ThresholdAdvice:
    """Score each training example with an intent trained on the others, beside the workspace's active intents.

    Uses the understanding service's offline engine, the one that answers without an LLM key.
    """
    examples = [
        e
        for e in match.get("training_examples") or []
        if isinstance(e, dict) and str(e.get("text", "")).strip()
    ]
    if len(examples) < 2:
        return ThresholdAdvice(note="Add two or more examples to see what they score against this threshold.")
    others = [c for p in await plans.active_plans(workspace_id) for c in p.intents]
    scores = []
    for i, held in enumerate(examples[:MAX_HELD_OUT]):
        this = IntentCandidate(
            flow_id="threshold-advice",
            node_id="intent",
            display_name=str(match.get("display_name") or "this intent"),
            description=str(match.get("description") or ""),
            training_examples=[
                TrainingExample(text=str(e["text"]), language=str(e.get("language") or ""))
                for j, e in enumerate(examples)
                if j != i
            ],
            confidence_threshold=threshold,
        )
        detection = understanding.local.detect(
            str(held["text"]), [this, *others], ambiguity_margin=understanding.ambiguity_margin
        )
        scores.append(next((s.confidence for s in detection.top if s.flow_id == this.flow_id), 0.0))
    scores.sort()
    return ThresholdAdvice(
        scored=len(scores),
        lowest=scores[0],
        median=scores[len(scores) // 2],
        highest=scores[-1],
        passing=sum(1 for s in scores if s >= threshold),
    )
