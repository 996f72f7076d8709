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
    """Base of every node config; each node module (flows/nodes/) declares its own subclass."""


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
    negative_examples: list[TrainingExample] = []
    """Messages that must NOT run this action ("where is my order" for "create order"); optional."""


Match = MatchAny | MatchKeywords | MatchRegex | MatchIntent


# --- the document ---------------------------------------------------------------


class Position(_Shape):
    x: float
    y: float


class Node(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A node as the document writes it (id, type, config, position: DESIGN's field order).

    Decoding goes through the tagged union of flows.nodes.registry (`type` picks the config
    Struct); this plain shape is what the plan reads and what export encodes, since msgspec
    writes a tag first and the exported bytes keep DESIGN's order.
    """

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

    Decode it with `flows.validate.decode_document`: it decodes each node through the
    registry's tagged union and reports every error at once.
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
