"""Action `action.add_tag`: tags the conversation; a new tag raises `tag_added` for other flows."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeContext, NodeOutcome, NodeType
from flows.schema import NodeConfig, NodeGroup, Tag
from flows.turn import EventKind, TurnEvent


class AddTagConfig(NodeConfig):
    tag: Tag


async def run(ctx: NodeContext, config: AddTagConfig) -> NodeOutcome:
    added = await ctx.runtime.add_tag(config.tag)
    events = [TurnEvent(kind=EventKind.TAG_ADDED, data={"tag": config.tag})] if added else []
    return NodeOutcome(output={"tag": config.tag, "added": added}, events=events)


def summary(config: dict[str, Any]) -> str:
    return str(config.get("tag") or "")


NODE = NodeType(
    type="action.add_tag",
    group=NodeGroup.ACTION,
    label="Add tag",
    description="Adds a tag to the conversation.",
    config=AddTagConfig,
    run=run,
    starting_config={"tag": ""},
    summary=summary,
    hints={"tag": "Write the tag to add, like vip (up to 64 characters)."},
    rank=60,
)
