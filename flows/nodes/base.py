"""What a node sees (NodeContext), what it returns (NodeOutcome), and what a node type declares (NodeType)."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from flows.runtime import Runtime, WebhookOutcome
from flows.schema import NodeConfig, NodeGroup
from flows.templates import (
    SHARED_CACHE,
    TemplateCache,
    check_template,
    render_str,
    render_tree,
    template_strings,
)
from flows.turn import AIState, EventKind, Turn, TurnEvent


class NodeError(Exception):
    """A node could not do its job; the message says why (recorded in the trace)."""


class NodeContext(msgspec.Struct, kw_only=True):
    """Per-chain context handed to nodes; the interpreter sets `node_id` before each node."""

    turn: Turn
    runtime: Runtime
    names: dict[str, Any]  # template names of this chain; a webhook node sets "response"
    vars: dict[str, Any]
    strict: bool
    ai: AIState
    flow_id: str
    version: int
    node_id: str = ""
    confidence: float | None = None  # of the intent match that started the chain, if any
    trigger: dict[str, Any] = {}  # what made the trigger fire (set by the interpreter)
    warnings: list[str] = []  # the turn's warning sink
    templates: TemplateCache = SHARED_CACHE

    def render(self, value: Any) -> Any:
        """Render every templated leaf of a JSON value (typed single-expression leaves)."""
        return render_tree(
            value, self.names, strict=self.strict, warnings=self.warnings, cache=self.templates
        )

    def render_text(self, text: str) -> str:
        value = render_str(text, self.names, strict=self.strict, warnings=self.warnings, cache=self.templates)
        if value is None:
            return ""
        return value if isinstance(value, str) else str(value)


class NodeOutcome(msgspec.Struct, kw_only=True):
    port: str | None = None
    output: dict[str, Any] = {}
    ai: AIState | None = None  # the AI state after this node, when it changed it
    events: list[TurnEvent] = []  # events raised for other flows (tag_added / tag_removed)
    webhook: WebhookOutcome | None = None
    sent: int = 0  # messages sent to the customer
    halt: bool = False  # stop this branch (a webhook whose retries continue in the background)
    error: str | None = None  # a handled failure that still follows a port (webhook failure)


class ConfigIssue(msgspec.Struct, frozen=True):
    """A semantic problem of one config (field relative to the config, sentence, error code)."""

    field: str
    message: str
    code: str = "bad_value"


RunFn = Callable[[NodeContext, Any], Awaitable[NodeOutcome]]
CheckFn = Callable[[Any], list[ConfigIssue]]
SummaryFn = Callable[[dict[str, Any]], str]
# Finishes a node whose work went on in the background (a webhook retried later): the port it
# took and the response it got.
# (ctx, config, port, response, how the background call ended: its status code and error, when known)
ResumeFn = Callable[[NodeContext, Any, str, Any, WebhookOutcome | None], Awaitable[NodeOutcome]]


def no_summary(config: dict[str, Any]) -> str:
    return ""


def no_issues(config: Any) -> list[ConfigIssue]:
    return []


class NodeType(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the app knows about one node type; each flows/nodes/<name>.py declares `NODE`.

    The registry collects them; the validator, the compiled plan, the interpreter, the palette
    and the node forms all read this, so a new node type touches only its own module, its form
    template (`form`) and its tests.
    """

    type: str
    group: NodeGroup
    label: str
    description: str
    config: builtins.type[NodeConfig]  # builtins.: the field `type` above shadows the name
    run: RunFn
    check: CheckFn = no_issues
    out_ports: tuple[str | None, ...] = (None,)
    # What the palette drops: only the required fields, so the form opens and says what is missing.
    starting_config: dict[str, Any] = {}
    # One line on the node card; gets the JSON config as saved, which a draft may leave invalid.
    summary: SummaryFn = no_summary
    # Plain-words sentence per config field (dotted path), shown when the field is missing or wrong.
    hints: dict[str, str] = {}
    rank: int = 100  # order inside its palette group
    event: EventKind | None = None  # triggers: the turn event that starts them
    # Actions: what an intent trigger runs (the first such node reachable after it). Its config
    # has `requires_confirmation` and `confirmation_message`.
    external_action: bool = False
    resume: ResumeFn | None = None
    secrets: tuple[str, ...] = ()  # config paths holding secrets (stored as secret:// references)
    form: str = ""  # the form template; "" means nodes/<type>.html

    @property
    def form_template(self) -> str:
        return self.form or f"nodes/{self.type}.html"

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(field.encode_name for field in msgspec.structs.fields(self.config))


def template_issues(field: str, value: Any) -> list[ConfigIssue]:
    """Syntax errors of every templated leaf of `value`, reported against `field`."""
    issues = []
    for text in template_strings(value):
        problem = check_template(text)
        if problem is not None:
            issues.append(ConfigIssue(field, problem, "template_syntax"))
    return issues
