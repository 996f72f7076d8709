"""Action `action.update_ai_context`: merges rendered data into the AI's conversation context."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import ConfigIssue, NodeContext, NodeOutcome, NodeType, template_issues
from flows.schema import NodeConfig, NodeGroup


class UpdateAIContextConfig(NodeConfig):
    context_data: dict[str, Any]


async def run(ctx: NodeContext, config: UpdateAIContextConfig) -> NodeOutcome:
    data = ctx.render(config.context_data)
    merged = await ctx.runtime.merge_ai_context(data)
    ai = ctx.ai
    ai = ai.__class__(ai_enabled=ai.ai_enabled, custom_prompt=ai.custom_prompt, context=dict(merged))
    return NodeOutcome(output={"merged": data, "context": dict(merged)}, ai=ai)


def check(config: UpdateAIContextConfig) -> list[ConfigIssue]:
    if not config.context_data:
        return [
            ConfigIssue("context_data", "Add at least one key to merge into the AI context.", "missing_value")
        ]
    return template_issues("context_data", config.context_data)


def summary(config: dict[str, Any]) -> str:
    data = config.get("context_data")
    return ", ".join(str(k) for k in data) if isinstance(data, dict) else ""


NODE = NodeType(
    type="action.update_ai_context",
    group=NodeGroup.ACTION,
    label="Update AI context",
    description="Merges data into the context the AI sees for this conversation.",
    config=UpdateAIContextConfig,
    run=run,
    check=check,
    starting_config={"context_data": {}},
    summary=summary,
    hints={"context_data": "Add at least one key and value to merge into the AI context."},
    rank=30,
)
