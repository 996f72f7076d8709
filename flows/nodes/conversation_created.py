"""Trigger `when.conversation_created`: runs its chain when a new conversation appears."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, no_issues
from flows.schema import ConversationCreatedConfig

Config = ConversationCreatedConfig
check = no_issues


async def run(ctx: NodeContext, config: ConversationCreatedConfig) -> NodeOutcome:
    return NodeOutcome(output={"event": dict(ctx.names.get("event") or {})})
