"""Action `action.set_conversation_status`: moves the conversation to another status."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from flows.nodes.base import NodeContext, NodeOutcome, NodeType
from flows.schema import NodeConfig, NodeGroup


class SetConversationStatusConfig(NodeConfig):
    status: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z_]{0,31}$")]


async def run(ctx: NodeContext, config: SetConversationStatusConfig) -> NodeOutcome:
    await ctx.runtime.set_conversation_status(config.status)
    return NodeOutcome(output={"status": config.status})


def summary(config: dict[str, Any]) -> str:
    return str(config.get("status") or "")


NODE = NodeType(
    type="action.set_conversation_status",
    group=NodeGroup.ACTION,
    label="Set conversation status",
    description="Moves the conversation to another status.",
    config=SetConversationStatusConfig,
    run=run,
    starting_config={"status": "resolved"},
    summary=summary,
    hints={"status": "Write the status in lower-case letters and underscores, like resolved or on_hold."},
    rank=50,
)
