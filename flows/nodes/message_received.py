"""Trigger `when.message_received`: any message, keywords, a regex, or a trained intent."""

from __future__ import annotations

from flows.matching import check_regex, words
from flows.nodes.base import ConfigIssue, NodeContext, NodeOutcome, template_issues
from flows.schema import MatchIntent, MatchKeywords, MatchRegex, MessageReceivedConfig

Config = MessageReceivedConfig


async def run(ctx: NodeContext, config: MessageReceivedConfig) -> NodeOutcome:
    return NodeOutcome(output={"match": config.match.__struct_config__.tag, **ctx.trigger})


def check(config: MessageReceivedConfig) -> list[ConfigIssue]:
    match = config.match
    issues: list[ConfigIssue] = []
    if isinstance(match, MatchKeywords):
        if not match.keywords:
            issues.append(ConfigIssue("match.keywords", "Add at least one keyword.", "missing_value"))
        for i, keyword in enumerate(match.keywords):
            if not words(keyword):
                issues.append(
                    ConfigIssue(
                        f"match.keywords[{i}]",
                        "This keyword has no letters or digits; remove it or write a word.",
                    )
                )
    elif isinstance(match, MatchRegex):
        problem = check_regex(match.pattern)
        if problem is not None:
            code, message = problem
            issues.append(ConfigIssue("match.pattern", message, code))
    elif isinstance(match, MatchIntent):
        if not match.training_examples:
            issues.append(
                ConfigIssue(
                    "match.training_examples",
                    "Add at least one training example so the intent can be recognised.",
                    "missing_value",
                )
            )
        seen: set[str] = set()
        for i, var in enumerate(match.variables):
            if var.name in seen:
                issues.append(
                    ConfigIssue(
                        f"match.variables[{i}].name",
                        f"Variable {var.name!r} is defined twice; rename one.",
                        "duplicate_variable",
                    )
                )
            seen.add(var.name)
            issues += template_issues(f"match.variables[{i}].prompt", var.prompt)
    return issues
