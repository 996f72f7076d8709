"""The node-type registry: every flows/nodes/<name>.py that declares `NODE`, and the tagged union of nodes.

Adding a node type means adding its module (config Struct, run(), check(), `NODE`), its form
template and its tests; nothing here or elsewhere names node types.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Union, cast

import msgspec

import flows.nodes
from flows.nodes.base import NodeType
from flows.schema import NodeGroup, NodeId, Position

_GROUP_ORDER = {NodeGroup.TRIGGER: 0, NodeGroup.LOGIC: 1, NodeGroup.ACTION: 2}
_NOT_NODES = frozenset({"base", "registry"})


def _discover() -> list[NodeType]:
    found = []
    for info in pkgutil.iter_modules(flows.nodes.__path__):
        if info.name in _NOT_NODES:
            continue
        module = importlib.import_module(f"flows.nodes.{info.name}")
        spec = getattr(module, "NODE", None)
        if not isinstance(spec, NodeType):
            raise TypeError(f"flows/nodes/{info.name}.py declares no NODE = NodeType(...)")
        found.append(spec)
    return sorted(found, key=lambda t: (_GROUP_ORDER[t.group], t.rank, t.type))


NODE_TYPES: dict[str, NodeType] = {t.type: t for t in _discover()}

TRIGGER_TYPES = frozenset(name for name, t in NODE_TYPES.items() if t.group == NodeGroup.TRIGGER)
EVENT_TRIGGERS = {t.event.value: name for name, t in NODE_TYPES.items() if t.event is not None}


class _TypedNode(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the per-type node Structs: `type` is the tag that picks the config Struct."""


def _typed_node(spec: NodeType) -> type[_TypedNode]:
    name = "".join(part.title() for part in spec.type.replace(".", "_").split("_")) + "Node"
    return cast(
        "type[_TypedNode]",
        msgspec.defstruct(
            name,
            [("id", NodeId), ("config", spec.config), ("position", Position | None, None)],
            bases=(_TypedNode,),
            tag_field="type",
            tag=spec.type,
            module=__name__,
        ),
    )


TYPED_NODES: dict[str, type[_TypedNode]] = {name: _typed_node(spec) for name, spec in NODE_TYPES.items()}
# The schema of one node: msgspec picks the config Struct by the node's `type`.
TypedNode: Any = Union[tuple(TYPED_NODES.values())]  # noqa: UP007  (a Union built from the registry)


def summaries(document: dict[str, Any]) -> dict[str, str]:
    """Node id -> the one line its card shows, from a saved document that may be an invalid draft."""
    lines = {}
    for node in document.get("nodes") or []:
        spec = NODE_TYPES.get(str(node.get("type"))) if isinstance(node, dict) else None
        if spec is not None and isinstance(node.get("id"), str):
            config = node.get("config")
            lines[node["id"]] = spec.summary(config if isinstance(config, dict) else {})
    return lines
