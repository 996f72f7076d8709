"""Action `action.remove_tag`: untags the conversation; a removed tag raises `tag_removed` for other flows."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeContext, NodeOutcome, NodeType
from flows.schema import NodeConfig, NodeGroup, Tag
from flows.turn import EventKind, TurnEvent


class RemoveTagConfig(NodeConfig):
    tag: Tag


async def run(ctx: NodeContext, config: RemoveTagConfig) -> NodeOutcome:
    removed = await ctx.runtime.remove_tag(config.tag)
    events = [TurnEvent(kind=EventKind.TAG_REMOVED, data={"tag": config.tag})] if removed else []
    return NodeOutcome(output={"tag": config.tag, "removed": removed}, events=events)


def summary(config: dict[str, Any]) -> str:
    return str(config.get("tag") or "")


NODE = NodeType(
    type="action.remove_tag",
    group=NodeGroup.ACTION,
    label="Remove tag",
    description="Removes a tag from the conversation.",
    config=RemoveTagConfig,
    run=run,
    starting_config={"tag": ""},
    summary=summary,
    hints={"tag": "Write the tag to remove, like vip (up to 64 characters)."},
    rank=70,
)
