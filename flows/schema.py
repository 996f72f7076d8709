"""msgspec Structs of the flow document (DESIGN "Flow document") and its canonical encoding."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Final, Literal

import msgspec

SCHEMA_V1: Final = "switchboard.flow/v1"

NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class FlowStatus(str, Enum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"


class NodeGroup(str, Enum):
    TRIGGER = "trigger"
    LOGIC = "logic"
    ACTION = "action"


class _Shape(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every document shape: frozen, strict about unknown fields."""


class NodeConfig(_Shape):
    """Base of every node config; the concrete class is picked by the node type."""


# --- triggers -----------------------------------------------------------------


class TrainingExample(_Shape):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    language: str = ""


class VariableSpec(_Shape):
    """A variable an intent extracts from the message (asked for when required and missing)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    prompt: str = ""
    required: bool = False
    default: Any = None
    type: str | None = None


class MatchAny(_Shape, tag_field="kind", tag="any"):
    pass


class MatchKeywords(_Shape, tag_field="kind", tag="keywords"):
    keywords: list[Annotated[str, msgspec.Meta(max_length=200)]]
    mode: Literal["any", "all"] = "any"


class MatchRegex(_Shape, tag_field="kind", tag="regex"):
    pattern: str


class MatchIntent(_Shape, tag_field="kind", tag="intent"):
    display_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    description: str = ""
    training_examples: list[TrainingExample] = []
    confidence_threshold: Probability = 0.8
    variables: list[VariableSpec] = []


Match = MatchAny | MatchKeywords | MatchRegex | MatchIntent


class MessageReceivedConfig(NodeConfig):
    match: Match


class ConversationCreatedConfig(NodeConfig):
    pass


class ContactCreatedConfig(NodeConfig):
    pass


class TagAddedConfig(NodeConfig):
    tag: Tag


class TagRemovedConfig(NodeConfig):
    tag: Tag


# --- actions ------------------------------------------------------------------


class SendMessageConfig(NodeConfig):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    message_type: Literal["marketing", "support", "ai"] = "support"


class ControlAIResponseConfig(NodeConfig):
    action: Literal["enable", "disable", "custom_prompt", "reset_context"]
    custom_prompt: str = ""


class UpdateAIContextConfig(NodeConfig):
    context_data: dict[str, Any]


class WebhookAuth(_Shape):
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


class SetConversationStatusConfig(NodeConfig):
    status: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z_]{0,31}$")]


class AddTagConfig(NodeConfig):
    tag: Tag


class RemoveTagConfig(NodeConfig):
    tag: Tag


# --- logic --------------------------------------------------------------------

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


# --- the document ---------------------------------------------------------------


class Position(_Shape):
    x: float
    y: float


class Node(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A node; `config` is the concrete config Struct of `type` (see flows.nodes.registry)."""

    id: NodeId
    type: str
    config: NodeConfig
    position: Position | None = None


class Edge(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    from_: NodeId = msgspec.field(name="from")
    to: NodeId
    port: str | None = None


class FlowDocument(_Shape, kw_only=True):
    """The JSON that the editor saves, the API takes and export writes.

    Decode it with `flows.validate.decode_document` (node configs are typed per node type,
    which a plain `msgspec.json.decode(..., type=FlowDocument)` cannot know).
    """

    schema: Literal["switchboard.flow/v1"] = SCHEMA_V1
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    description: str = ""
    status: FlowStatus = FlowStatus.DRAFT
    priority: int = 0
    nodes: list[Node] = []
    edges: list[Edge] = []


_ENCODER = msgspec.json.Encoder(order="deterministic")


def encode_document(doc: FlowDocument) -> bytes:
    """Canonical export: fields in DESIGN order, dict keys sorted, 2-space indent, final newline.

    The same document always gives the same bytes, and decode(encode(doc)) == doc.
    """
    return msgspec.json.format(_ENCODER.encode(doc), indent=2) + b"\n"


def document_to_dict(doc: FlowDocument) -> dict[str, Any]:
    """The document as plain JSON-compatible Python objects (same shape as the export)."""
    return msgspec.json.decode(_ENCODER.encode(doc))
