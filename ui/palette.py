"""The editor's palette: every node type of the registry as JSON, with a starting config for new nodes."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from flows.nodes.registry import NODE_TYPES

# Only the required fields: a fresh node starts minimal and Validate says what is missing.
_STARTING_CONFIG: dict[str, dict[str, Any]] = {
    "when.message_received": {"match": {"kind": "any"}},
    "when.tag_added": {"tag": ""},
    "when.tag_removed": {"tag": ""},
    "action.send_message": {"text": "", "message_type": "support"},
    "action.control_ai_response": {"action": "enable"},
    "action.update_ai_context": {"context_data": {}},
    "action.call_webhook": {"url": "", "method": "POST"},
    "action.set_conversation_status": {"status": "resolved"},
    "action.add_tag": {"tag": ""},
    "action.remove_tag": {"tag": ""},
    "logic.condition": {"left": "", "op": "equals", "right": ""},
}

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
            "defaults": _STARTING_CONFIG.get(t.type, {}),
        }
        for t in NODE_TYPES.values()
    ]


@lru_cache(maxsize=1)
def node_types_json() -> str:
    # Embedded in a <script type="application/json"> block: "</" must not close it.
    return json.dumps(node_types()).replace("</", "<\\/")


def template_names(variables: list[str]) -> list[str]:
    """Names a template field can use here: the fixed ones, the flow's variables, and the webhook response."""
    return (
        list(TEMPLATE_NAMES[:6])
        + [f"vars.{v}" for v in variables]
        + ["vars.*", "response.*"]
        + list(TEMPLATE_NAMES[6:])
    )
