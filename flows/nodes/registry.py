"""The node-type registry: every node type's config, ports, run() and checks (the UI builds its palette from it)."""

from __future__ import annotations

from types import ModuleType

from flows.nodes import (
    add_tag,
    call_webhook,
    condition,
    contact_created,
    control_ai_response,
    conversation_created,
    message_received,
    remove_tag,
    send_message,
    set_conversation_status,
    tag_added,
    tag_removed,
    update_ai_context,
)
from flows.nodes.base import NodeType
from flows.schema import NodeGroup

TRIGGER, LOGIC, ACTION = NodeGroup.TRIGGER, NodeGroup.LOGIC, NodeGroup.ACTION


def _entry(
    type_: str,
    group: NodeGroup,
    label: str,
    description: str,
    module: ModuleType,
    out_ports: tuple[str | None, ...] = (None,),
) -> NodeType:
    return NodeType(
        type=type_,
        group=group,
        label=label,
        description=description,
        config=module.Config,
        out_ports=out_ports,
        run=module.run,
        check=module.check,
    )


NODE_TYPES: dict[str, NodeType] = {
    t.type: t
    for t in (
        _entry(
            "when.message_received",
            TRIGGER,
            "Message received",
            "Starts when a message arrives: any message, keywords, a regex, or a trained intent (external action).",
            message_received,
        ),
        _entry(
            "when.conversation_created",
            TRIGGER,
            "Conversation created",
            "Starts when a new conversation is opened.",
            conversation_created,
        ),
        _entry(
            "when.contact_created",
            TRIGGER,
            "Contact created",
            "Starts when a new contact writes for the first time.",
            contact_created,
        ),
        _entry(
            "when.tag_added",
            TRIGGER,
            "Tag added",
            "Starts when a tag is added to the conversation.",
            tag_added,
        ),
        _entry(
            "when.tag_removed",
            TRIGGER,
            "Tag removed",
            "Starts when a tag is removed from the conversation.",
            tag_removed,
        ),
        _entry(
            "action.send_message",
            ACTION,
            "Send message",
            "Sends a (templated) message to the customer.",
            send_message,
        ),
        _entry(
            "action.control_ai_response",
            ACTION,
            "Control AI response",
            "Enables or disables the AI, sets its custom prompt, or resets its context.",
            control_ai_response,
        ),
        _entry(
            "action.update_ai_context",
            ACTION,
            "Update AI context",
            "Merges data into the context the AI sees for this conversation.",
            update_ai_context,
        ),
        _entry(
            "action.call_webhook",
            ACTION,
            "Call webhook",
            "Calls an external HTTP endpoint (Zapier, n8n, Make, a shop's API).",
            call_webhook,
            out_ports=("success", "failure"),
        ),
        _entry(
            "action.set_conversation_status",
            ACTION,
            "Set conversation status",
            "Moves the conversation to another status.",
            set_conversation_status,
        ),
        _entry("action.add_tag", ACTION, "Add tag", "Adds a tag to the conversation.", add_tag),
        _entry("action.remove_tag", ACTION, "Remove tag", "Removes a tag from the conversation.", remove_tag),
        _entry(
            "logic.condition",
            LOGIC,
            "Condition",
            "Compares two values and branches on true or false.",
            condition,
            out_ports=("true", "false"),
        ),
    )
}

TRIGGER_TYPES = frozenset(name for name, t in NODE_TYPES.items() if t.group == TRIGGER)
