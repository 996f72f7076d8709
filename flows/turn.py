"""The input of one interpreter turn: plain frozen Structs built by the service."""

from __future__ import annotations

from enum import Enum
from typing import Any

import msgspec


class EventKind(str, Enum):
    """Non-message events that can start a flow."""

    CONVERSATION_CREATED = "conversation_created"
    CONTACT_CREATED = "contact_created"
    TAG_ADDED = "tag_added"
    TAG_REMOVED = "tag_removed"


class PendingKind(str, Enum):
    """Why an external action is waiting on the customer."""

    CONFIRMATION = "confirmation"
    MISSING_VARIABLES = "missing_variables"


def value_of(kind: Enum | str) -> str:
    """The plain string of a status/kind, whether the caller passed the enum or its value."""
    return kind.value if isinstance(kind, Enum) else str(kind)


class ContactInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    tags: list[str] = []
    attributes: dict[str, Any] = {}


class ConversationInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str = "open"
    tags: list[str] = []


class TurnMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    text: str
    type: str = "text"
    timestamp: float


class TurnEvent(msgspec.Struct, frozen=True, kw_only=True):
    kind: EventKind
    data: dict[str, Any] = {}


class AIState(msgspec.Struct, frozen=True, kw_only=True):
    """Mirror of the `ai_control_{id}` and `ai_context_{id}` Redis keys."""

    ai_enabled: bool = True
    custom_prompt: str | None = None
    context: dict[str, Any] = {}


class PendingAction(msgspec.Struct, frozen=True, kw_only=True):
    """An external action waiting on the customer's next reply."""

    id: str
    flow_id: str
    node_id: str  # the intent trigger node
    kind: PendingKind
    vars: dict[str, Any] = {}
    missing: list[str] = []
    asked_count: int = 0
    confidence: float = 0.0
    language: str = ""
    """The customer's language when the action matched: questions on later turns (where no detection
    runs) are asked in it."""


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    workspace_id: str
    conversation: ConversationInfo
    contact: ContactInfo
    messages: list[TurnMessage] = []
    events: list[TurnEvent] = []
    ai: AIState = msgspec.field(default_factory=AIState)
    pending: PendingAction | None = None
    timestamp: float
    phone_number: str = ""

    @property
    def text(self) -> str:
        """All buffered message texts of the turn, one per line."""
        return "\n".join(m.text for m in self.messages if m.text)
