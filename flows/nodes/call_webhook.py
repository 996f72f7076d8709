"""Action `action.call_webhook`: calls an external HTTP endpoint through the Runtime; ports success/failure."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from flows.nodes.base import ConfigIssue, NodeContext, NodeOutcome, NodeType, template_issues
from flows.runtime import WebhookOutcome, WebhookStatus
from flows.schema import NodeConfig, NodeGroup
from flows.templates import TemplateBudgetError, is_templated
from flows.turn import value_of


class WebhookAuth(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    type: Literal["none", "bearer", "api_key"] = "none"
    # In a stored document this is a "secret://<id>" reference; flows/ treats it as opaque.
    secret: str = ""
    header_name: str = "X-API-Key"


class CallWebhookConfig(NodeConfig):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = {}
    auth: WebhookAuth = msgspec.field(default_factory=WebhookAuth)
    payload_template: Any = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    retry_delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 1.0
    success_message: str = ""
    failure_message: str = ""
    requires_confirmation: bool = False
    confirmation_message: str = ""


class WebhookCall(msgspec.Struct, frozen=True, kw_only=True):
    """What the Runtime's webhook executor needs; it renders url/headers/payload with flows.templates."""

    flow_id: str
    node_id: str
    config: CallWebhookConfig
    names: dict[str, Any]
    vars: dict[str, Any] = {}
    confidence: float | None = None
    strict: bool = False


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
    error = None if ok else (outcome.error or _answered(outcome.status_code))
    if template:
        try:
            text = ctx.render_text(template)
        except TemplateBudgetError as exc:
            # The call went out: its port is followed; the message that could not be rendered is the error.
            text = ""
            error = f"{'success' if ok else 'failure'} message not sent: {exc}"
        if text.strip():
            await ctx.runtime.send_message(text, message_type="support")
            output["message"] = text
            sent = 1
    return NodeOutcome(
        port="success" if ok else "failure", output=output, webhook=outcome, sent=sent, error=error
    )


def _answered(status_code: int | None) -> str:
    return f"the webhook answered {status_code}" if status_code is not None else "the webhook call failed"


async def resume(
    ctx: NodeContext, config: CallWebhookConfig, port: str, response: Any, ended: WebhookOutcome | None
) -> NodeOutcome:
    """A call whose retries went on in the background ended on `port` (success or failure), as `ended` says."""
    outcome = WebhookOutcome(
        status=WebhookStatus(port),
        response=response,
        status_code=ended.status_code if ended else None,
        error=ended.error if ended else None,
        duration_ms=ended.duration_ms if ended else 0.0,
        attempts=ended.attempts if ended else 0,
    )
    return await finish(ctx, config, outcome)


def check(config: CallWebhookConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if not config.url.strip():
        issues.append(ConfigIssue("url", "Write the URL to call, starting with https://.", "missing_value"))
    elif not is_templated(config.url) and not config.url.startswith(("http://", "https://")):
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


def summary(config: dict[str, Any]) -> str:
    return f"{config.get('method') or 'POST'} {config.get('url') or ''}"


NODE = NodeType(
    type="action.call_webhook",
    group=NodeGroup.ACTION,
    label="Call webhook",
    description="Calls an external HTTP endpoint (Zapier, n8n, Make, a shop's API).",
    config=CallWebhookConfig,
    run=run,
    check=check,
    out_ports=("success", "failure"),
    starting_config={"url": "", "method": "POST"},
    summary=summary,
    hints={
        "url": "Write the URL to call, starting with https:// (up to 2048 characters).",
        "method": "Choose the HTTP method: GET, POST, PUT, PATCH or DELETE.",
        "headers": "Give each header a name and a text value.",
        "auth.type": "Choose the authentication: none, bearer token or API key header.",
        "timeout_seconds": "Set the timeout in seconds: more than 0 and at most 60, like 2.5.",
        "max_retries": "Set the retries as a whole number from 0 to 10.",
        "retry_delay_seconds": "Set the retry delay in seconds, from 0 to 3600, like 0.5.",
    },
    rank=40,
    external_action=True,
    resume=resume,
    secrets=("auth.secret",),
)
