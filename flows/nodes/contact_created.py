"""Trigger `when.contact_created`: runs its chain when a new contact appears."""

from __future__ import annotations

from flows.nodes.base import NodeContext, NodeOutcome, no_issues
from flows.schema import ContactCreatedConfig

Config = ContactCreatedConfig
check = no_issues


async def run(ctx: NodeContext, config: ContactCreatedConfig) -> NodeOutcome:
    return NodeOutcome(output={"event": dict(ctx.names.get("event") or {})})
