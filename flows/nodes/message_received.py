"""Trigger `when.message_received`: any message, keywords, a regex, or a trained intent."""

from __future__ import annotations

from typing import Any

from flows.matching import check_regex, words
from flows.nodes.base import ConfigIssue, NodeContext, NodeOutcome, NodeType, template_issues
from flows.schema import Match, MatchIntent, MatchKeywords, MatchRegex, NodeConfig, NodeGroup


class MessageReceivedConfig(NodeConfig):
    match: Match


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


def summary(config: dict[str, Any]) -> str:
    raw = config.get("match")
    match: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = match.get("kind")
    if kind == "keywords":
        return "keywords: " + ", ".join(str(k) for k in match.get("keywords") or [])
    if kind == "regex":
        return f"regex: {match.get('pattern') or ''}"
    if kind == "intent":
        return f"intent: {match.get('display_name') or ''}"
    return "any message"


NODE = NodeType(
    type="when.message_received",
    group=NodeGroup.TRIGGER,
    label="Message received",
    description=(
        "Starts when a message arrives: any message, keywords, a regex, or a trained intent (external action)."
    ),
    config=MessageReceivedConfig,
    run=run,
    check=check,
    starting_config={"match": {"kind": "any"}},
    summary=summary,
    hints={
        "match.kind": "Choose what the message must match: any message, keywords, a regex or an intent.",
        "match.keywords": "Add at least one keyword (up to 200 characters each).",
        "match.pattern": (
            "Write the regular expression to look for in the message (RE2: no lookarounds or "
            "backreferences; \\w and \\d are ASCII, \\p{L} is a letter of any language)."
        ),
        "match.display_name": "Name the action (up to 200 characters), like Create order.",
        "match.training_examples": "Add at least one example of what a customer would write.",
        "match.negative_examples": (
            "Write each negative example as a message that must not run this action, like where is my order."
        ),
        "match.confidence_threshold": "Set the confidence threshold between 0 and 1, like 0.65.",
        "match.variables": "Name each variable with letters, digits and underscores, starting with a letter.",
    },
    rank=10,
)
