"""Action `action.call_webhook`: calls an external HTTP endpoint through the Runtime; ports success/failure."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import ConfigIssue, NodeContext, NodeOutcome, template_issues
from flows.ports import WebhookCall, WebhookOutcome, WebhookStatus
from flows.schema import CallWebhookConfig
from flows.templates import is_templated
from flows.turn import value_of

Config = CallWebhookConfig


async def run(ctx: NodeContext, config: CallWebhookConfig) -> NodeOutcome:
    call = WebhookCall(
        flow_id=ctx.flow_id,
        node_id=ctx.node_id,
        config=config,
        names=ctx.names,
        vars=dict(ctx.vars),
        confidence=ctx.confidence,
        strict=ctx.strict,
    )
    outcome = await ctx.runtime.call_webhook(call)
    return await finish(ctx, config, outcome)


async def finish(ctx: NodeContext, config: CallWebhookConfig, outcome: WebhookOutcome) -> NodeOutcome:
    """Turn an outcome into the node's result: expose `response`, send the success/failure message."""
    output: dict[str, Any] = {
        "status": value_of(outcome.status),
        "status_code": outcome.status_code,
        "attempts": outcome.attempts,
        "duration_ms": outcome.duration_ms,
        "error": outcome.error,
    }
    if outcome.status == WebhookStatus.SCHEDULED:
        return NodeOutcome(output=output, webhook=outcome, halt=True)
    ctx.names["response"] = outcome.response
    ok = outcome.status == WebhookStatus.SUCCESS
    template = config.success_message if ok else config.failure_message
    sent = 0
    if template:
        text = ctx.render_text(template)
        if text.strip():
            await ctx.runtime.send_message(text, message_type="support")
            output["message"] = text
            sent = 1
    return NodeOutcome(
        port="success" if ok else "failure",
        output=output,
        webhook=outcome,
        sent=sent,
        error=None if ok else (outcome.error or f"the webhook answered {outcome.status_code}"),
    )


def check(config: CallWebhookConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if not is_templated(config.url) and not config.url.startswith(("http://", "https://")):
        issues.append(ConfigIssue("url", "The URL must start with http:// or https://.", "bad_value"))
    if config.auth.type != "none" and not config.auth.secret:
        issues.append(
            ConfigIssue(
                "auth.secret",
                f"Auth type {config.auth.type!r} needs a secret; add it or set auth type to none.",
                "missing_value",
            )
        )
    if config.auth.type == "api_key" and not config.auth.header_name.strip():
        issues.append(
            ConfigIssue(
                "auth.header_name",
                "Name the header that carries the API key (for example X-API-Key).",
                "missing_value",
            )
        )
    for field in ("url", "success_message", "failure_message", "confirmation_message"):
        issues += template_issues(field, getattr(config, field))
    issues += template_issues("headers", config.headers)
    issues += template_issues("payload_template", config.payload_template)
    return issues
