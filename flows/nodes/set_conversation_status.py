"""Action `action.set_conversation_status`: moves the conversation to another status."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, no_issues
from flows.schema import SetConversationStatusConfig

Config = SetConversationStatusConfig
check = no_issues


async def run(ctx: NodeContext, config: SetConversationStatusConfig) -> NodeOutcome:
    await ctx.runtime.set_conversation_status(config.status)
    return NodeOutcome(output={"status": config.status})
