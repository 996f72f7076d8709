"""Trigger `when.tag_added`: runs its chain when its tag is added to the conversation."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, no_issues
from flows.schema import TagAddedConfig

Config = TagAddedConfig
check = no_issues


async def run(ctx: NodeContext, config: TagAddedConfig) -> NodeOutcome:
    return NodeOutcome(output={"tag": config.tag, "event": dict(ctx.names.get("event") or {})})
