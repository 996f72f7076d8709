"""Trigger `when.contact_created`: runs its chain when a new contact appears."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, NodeType
from flows.schema import NodeConfig, NodeGroup
from flows.turn import EventKind


class ContactCreatedConfig(NodeConfig):
    pass


async def run(ctx: NodeContext, config: ContactCreatedConfig) -> NodeOutcome:
    return NodeOutcome(output={"event": dict(ctx.names.get("event") or {})})


NODE = NodeType(
    type="when.contact_created",
    group=NodeGroup.TRIGGER,
    label="Contact created",
    description="Starts when a new contact writes for the first time.",
    config=ContactCreatedConfig,
    run=run,
    rank=30,
    event=EventKind.CONTACT_CREATED,
)
