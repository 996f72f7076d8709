"""Trigger `when.conversation_created`: runs its chain when a new conversation appears."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, NodeType
from flows.schema import NodeConfig, NodeGroup
from flows.turn import EventKind


class ConversationCreatedConfig(NodeConfig):
    pass


async def run(ctx: NodeContext, config: ConversationCreatedConfig) -> NodeOutcome:
    return NodeOutcome(output={"event": dict(ctx.names.get("event") or {})})


NODE = NodeType(
    type="when.conversation_created",
    group=NodeGroup.TRIGGER,
    label="Conversation created",
    description="Starts when a new conversation is opened.",
    config=ConversationCreatedConfig,
    run=run,
    rank=20,
    event=EventKind.CONVERSATION_CREATED,
)
