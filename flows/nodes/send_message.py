"""Action `action.send_message`: renders its text and sends it to the customer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from flows.nodes.base import ConfigIssue, NodeContext, NodeError, NodeOutcome, NodeType, template_issues
from flows.schema import NodeConfig, NodeGroup


class SendMessageConfig(NodeConfig):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    message_type: Literal["marketing", "support", "ai"] = "support"


async def run(ctx: NodeContext, config: SendMessageConfig) -> NodeOutcome:
    text = ctx.render_text(config.text)
    if not text.strip():
        raise NodeError("The message rendered empty, so nothing was sent; check the template names it uses.")
    await ctx.runtime.send_message(text, message_type=config.message_type)
    return NodeOutcome(output={"text": text, "message_type": config.message_type}, sent=1)


def check(config: SendMessageConfig) -> list[ConfigIssue]:
    if not config.text.strip():
        return [ConfigIssue("text", "Write the message to send.", "missing_value")]
    return template_issues("text", config.text)


def summary(config: dict[str, Any]) -> str:
    return str(config.get("text") or "")


NODE = NodeType(
    type="action.send_message",
    group=NodeGroup.ACTION,
    label="Send message",
    description="Sends a (templated) message to the customer.",
    config=SendMessageConfig,
    run=run,
    check=check,
    starting_config={"text": "", "message_type": "support"},
    summary=summary,
    hints={
        "text": "Write the message to send (up to 4096 characters).",
        "message_type": "Choose the message type: support, marketing or ai.",
    },
    rank=10,
)
