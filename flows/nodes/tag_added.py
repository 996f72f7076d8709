"""Trigger `when.tag_added`: runs its chain when its tag is added to the conversation."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeContext, NodeOutcome, NodeType
from flows.schema import NodeConfig, NodeGroup, Tag
from flows.turn import EventKind


class TagAddedConfig(NodeConfig):
    tag: Tag


async def run(ctx: NodeContext, config: TagAddedConfig) -> NodeOutcome:
    return NodeOutcome(output={"tag": config.tag, "event": dict(ctx.names.get("event") or {})})


def summary(config: dict[str, Any]) -> str:
    return str(config.get("tag") or "")


NODE = NodeType(
    type="when.tag_added",
    group=NodeGroup.TRIGGER,
    label="Tag added",
    description="Starts when a tag is added to the conversation.",
    config=TagAddedConfig,
    run=run,
    starting_config={"tag": ""},
    summary=summary,
    hints={"tag": "Write the tag that starts this flow, like vip (up to 64 characters)."},
    rank=40,
    event=EventKind.TAG_ADDED,
)
