"""Action `action.control_ai_response`: enables or disables the AI, sets its prompt, or resets its context."""

from __future__ import annotations

from typing import Any, Literal

from flows.nodes.base import ConfigIssue, NodeContext, NodeOutcome, NodeType, template_issues
from flows.schema import NodeConfig, NodeGroup


class ControlAIResponseConfig(NodeConfig):
    action: Literal["enable", "disable", "custom_prompt", "reset_context"]
    custom_prompt: str = ""


async def run(ctx: NodeContext, config: ControlAIResponseConfig) -> NodeOutcome:
    ai = ctx.ai
    if config.action == "reset_context":
        await ctx.runtime.reset_ai_context()
        ai = ai.__class__(ai_enabled=ai.ai_enabled, custom_prompt=ai.custom_prompt, context={})
        return NodeOutcome(output={"action": config.action, "context": {}}, ai=ai)
    if config.action == "custom_prompt":
        ai = ai.__class__(
            ai_enabled=ai.ai_enabled, custom_prompt=ctx.render_text(config.custom_prompt), context=ai.context
        )
    else:
        ai = ai.__class__(
            ai_enabled=config.action == "enable", custom_prompt=ai.custom_prompt, context=ai.context
        )
    await ctx.runtime.write_ai_control(ai_enabled=ai.ai_enabled, custom_prompt=ai.custom_prompt)
    output = {"action": config.action, "ai_enabled": ai.ai_enabled, "custom_prompt": ai.custom_prompt}
    return NodeOutcome(output=output, ai=ai)


def check(config: ControlAIResponseConfig) -> list[ConfigIssue]:
    if config.action == "custom_prompt" and not config.custom_prompt.strip():
        return [
            ConfigIssue(
                "custom_prompt",
                "Write the prompt the AI should use, or pick another action.",
                "missing_value",
            )
        ]
    return template_issues("custom_prompt", config.custom_prompt)


def summary(config: dict[str, Any]) -> str:
    return str(config.get("action") or "")


NODE = NodeType(
    type="action.control_ai_response",
    group=NodeGroup.ACTION,
    label="Control AI response",
    description="Enables or disables the AI, sets its custom prompt, or resets its context.",
    config=ControlAIResponseConfig,
    run=run,
    check=check,
    starting_config={"action": "enable"},
    summary=summary,
    hints={
        "action": "Choose what to do with the AI: enable, disable, set a custom prompt or reset its context."
    },
    rank=20,
)
