"""Trigger `when.tag_removed`: runs its chain when its tag is removed from the conversation."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeContext, NodeOutcome, NodeType
from flows.schema import NodeConfig, NodeGroup, Tag
from flows.turn import EventKind


class TagRemovedConfig(NodeConfig):
    tag: Tag


async def run(ctx: NodeContext, config: TagRemovedConfig) -> NodeOutcome:
    return NodeOutcome(output={"tag": config.tag, "event": dict(ctx.names.get("event") or {})})


def summary(config: dict[str, Any]) -> str:
    return str(config.get("tag") or "")


NODE = NodeType(
    type="when.tag_removed",
    group=NodeGroup.TRIGGER,
    label="Tag removed",
    description="Starts when a tag is removed from the conversation.",
    config=TagRemovedConfig,
    run=run,
    starting_config={"tag": ""},
    summary=summary,
    hints={"tag": "Write the tag whose removal starts this flow, like vip (up to 64 characters)."},
    rank=50,
    event=EventKind.TAG_REMOVED,
)
