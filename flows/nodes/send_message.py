"""Action `action.send_message`: renders its text and sends it to the customer."""

from __future__ import annotations

from flows.nodes.base import ConfigIssue, NodeContext, NodeError, NodeOutcome, template_issues
from flows.schema import SendMessageConfig

Config = SendMessageConfig


async def run(ctx: NodeContext, config: SendMessageConfig) -> NodeOutcome:
    text = ctx.render_text(config.text)
    if not text.strip():
        raise NodeError("The message rendered empty, so nothing was sent; check the template names it uses.")
    await ctx.runtime.send_message(text, message_type=config.message_type)
    return NodeOutcome(output={"text": text, "message_type": config.message_type}, sent=1)


def check(config: SendMessageConfig) -> list[ConfigIssue]:
    return template_issues("text", config.text)
