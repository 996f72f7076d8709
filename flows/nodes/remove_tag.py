"""Action `action.remove_tag`: untags the conversation; a removed tag raises `tag_removed` for other flows."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, no_issues
from flows.schema import RemoveTagConfig
from flows.turn import EventKind, TurnEvent

Config = RemoveTagConfig
check = no_issues


async def run(ctx: NodeContext, config: RemoveTagConfig) -> NodeOutcome:
    removed = await ctx.runtime.remove_tag(config.tag)
    events = [TurnEvent(kind=EventKind.TAG_REMOVED, data={"tag": config.tag})] if removed else []
    return NodeOutcome(output={"tag": config.tag, "removed": removed}, events=events)
