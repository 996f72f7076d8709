"""Action `action.add_tag`: tags the conversation; a new tag raises `tag_added` for other flows."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, no_issues
from flows.schema import AddTagConfig
from flows.turn import EventKind, TurnEvent

Config = AddTagConfig
check = no_issues


async def run(ctx: NodeContext, config: AddTagConfig) -> NodeOutcome:
    added = await ctx.runtime.add_tag(config.tag)
    events = [TurnEvent(kind=EventKind.TAG_ADDED, data={"tag": config.tag})] if added else []
    return NodeOutcome(output={"tag": config.tag, "added": added}, events=events)
