"""The editor's palette: every node type of the registry as JSON, with its starting config and summary."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import msgspec

from flows.nodes.base import NodeType
from flows.nodes.registry import NODE_TYPES

TEMPLATE_NAMES = (
    "contact.first_name",
    "contact.last_name",
    "contact.phone",
    "contact.tags",
    "conversation.id",
    "conversation.status",
    "message.text",
    "message_text",
    "phone_number",
    "timestamp",
    "event",
)


def node_types() -> list[dict[str, Any]]:
    return [
        {
            "type": t.type,
            "group": t.group.value,
            "label": t.label,
            "description": t.description,
            "out_ports": list(t.out_ports),
            "defaults": t.starting_config,
            "summary": t.summary(t.starting_config),
        }
        for t in NODE_TYPES.values()
    ]


@lru_cache(maxsize=1)
def node_types_json() -> str:
    # Embedded in a <script type="application/json"> block: "</" must not close it.
    return json.dumps(node_types()).replace("</", "<\\/")


def form_values(spec: NodeType, config: dict[str, Any]) -> dict[str, Any]:
    """The config a form shows: the node's (maybe partial) config over its type's defaults."""
    values = {
        f.encode_name: msgspec.to_builtins(
            f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        )
        for f in msgspec.structs.fields(spec.config)
        if f.default is not msgspec.NODEFAULT or f.default_factory is not msgspec.NODEFAULT
    }
    values.update(config)
    return values


def template_names(variables: list[str]) -> list[str]:
    """Names a template field can use here: the fixed ones, the flow's variables, and the webhook response."""
    return (
        list(TEMPLATE_NAMES[:6])
        + [f"vars.{v}" for v in variables]
        + ["vars.*", "response.*"]
        + list(TEMPLATE_NAMES[6:])
    )
