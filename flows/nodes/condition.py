"""Logic `logic.condition`: compares two rendered values and follows the `true` or `false` port."""

from __future__ import annotations

from typing import Any, Literal

from flows.matching import check_regex, compile_regex, search
from flows.nodes.base import ConfigIssue, NodeContext, NodeError, NodeOutcome, NodeType, template_issues
from flows.schema import NodeConfig, NodeGroup
from flows.templates import is_templated, render_tree

ConditionOp = Literal[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "greater_than",
    "less_than",
    "exists",
    "is_empty",
    "matches",
]


class ConditionConfig(NodeConfig):
    left: Any
    op: ConditionOp
    right: Any = None


UNARY_OPS = frozenset({"exists", "is_empty"})


def _fold(value: Any) -> Any:
    return value.strip().casefold() if isinstance(value, str) else value


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise NodeError(f"{value!r} is not a number; greater_than/less_than compare numbers.")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise NodeError(f"{value!r} is not a number; greater_than/less_than compare numbers.") from None


def _equals(left: Any, right: Any) -> bool:
    if (isinstance(left, (int, float)) and not isinstance(left, bool)) or (
        isinstance(right, (int, float)) and not isinstance(right, bool)
    ):
        try:
            return _number(left) == _number(right)
        except NodeError:
            return False
    return _fold(left) == _fold(right)


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, (list, tuple)):
        return any(_equals(item, right) for item in left)
    if isinstance(left, dict):
        return right in left
    if left is None:
        return False
    return str(_fold(right)) in str(_fold(left))


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, dict)):
        return not value
    return False


def evaluate(left: Any, op: str, right: Any) -> bool:
    """The comparison; strings compare trimmed and case-insensitively, numbers numerically."""
    if op == "exists":
        return not (left is None or left == "")
    if op == "is_empty":
        return _is_empty(left)
    if op == "equals":
        return _equals(left, right)
    if op == "not_equals":
        return not _equals(left, right)
    if op == "contains":
        return _contains(left, right)
    if op == "not_contains":
        return not _contains(left, right)
    if op == "greater_than":
        return _number(left) > _number(right)
    if op == "less_than":
        return _number(left) < _number(right)
    if op == "matches":
        pattern = "" if right is None else str(right)
        problem = check_regex(pattern)
        if problem is not None:
            raise NodeError(problem[1])
        return search(compile_regex(pattern), "" if left is None else str(left)) is not None
    raise NodeError(f"Unknown operator {op!r}.")


async def run(ctx: NodeContext, config: ConditionConfig) -> NodeOutcome:
    if config.op in UNARY_OPS:
        # Testing for presence must not fail on an undefined name, even in strict mode.
        left = render_tree(config.left, ctx.names, strict=False, warnings=[], cache=ctx.templates)
        right = None
    else:
        left = ctx.render(config.left)
        right = ctx.render(config.right)
    result = evaluate(left, config.op, right)
    return NodeOutcome(
        port="true" if result else "false",
        output={"left": left, "op": config.op, "right": right, "result": result},
    )


def check(config: ConditionConfig) -> list[ConfigIssue]:
    issues = template_issues("left", config.left) + template_issues("right", config.right)
    if config.op not in UNARY_OPS and config.right is None:
        issues.append(
            ConfigIssue(
                "right", "Write the value to compare with: this comparison needs one.", "missing_value"
            )
        )
    if config.op == "matches" and isinstance(config.right, str) and not is_templated(config.right):
        problem = check_regex(config.right)
        if problem is not None:
            issues.append(ConfigIssue("right", problem[1], problem[0]))
    return issues


def summary(config: dict[str, Any]) -> str:
    parts = (config.get("left"), config.get("op"), config.get("right"))
    return " ".join("" if p is None else str(p) for p in parts)


NODE = NodeType(
    type="logic.condition",
    group=NodeGroup.LOGIC,
    label="Condition",
    description="Compares two values and branches on true or false.",
    config=ConditionConfig,
    run=run,
    check=check,
    out_ports=("true", "false"),
    starting_config={"left": "", "op": "equals", "right": ""},
    summary=summary,
    hints={
        "left": "Write the value to compare, like {{ vars.quantity }}.",
        "op": "Choose how to compare the two values.",
        "right": "Write the value to compare with.",
    },
    rank=10,
)
