"""Trigger `when.tag_removed`: runs its chain when its tag is removed from the conversation."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, no_issues
from flows.schema import TagRemovedConfig

Config = TagRemovedConfig
check = no_issues


async def run(ctx: NodeContext, config: TagRemovedConfig) -> NodeOutcome:
    return NodeOutcome(output={"tag": config.tag, "event": dict(ctx.names.get("event") or {})})
