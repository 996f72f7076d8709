"""What the interpreter needs from the world: the async Runtime protocol and its value Structs."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from flows.schema import TrainingExample, VariableSpec
from flows.turn import AIState, PendingAction, Turn

if TYPE_CHECKING:  # the call_webhook node owns its request shape; the protocol only names it
    from flows.nodes.call_webhook import WebhookCall


class WebhookStatus(str, Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    # Retries continue as background work; the branch resumes later through continue_from.
    SCHEDULED = "scheduled"


class ReplyClass(str, Enum):
    APPROVE = "approve"
    REJECT = "reject"
    UNCLEAR = "unclear"


class ActionRunStatus(str, Enum):
    """Statuses of an external-action run (DESIGN "External action runs")."""

    PENDING = "pending"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


class IntentCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """One active intent trigger, as handed to the intent detector."""

    flow_id: str
    node_id: str
    display_name: str
    description: str = ""
    training_examples: list[TrainingExample] = []
    negative_examples: list[TrainingExample] = []
    confidence_threshold: float = 0.8
    priority: int = 0
    variables: list[VariableSpec] = []
    requires_confirmation: bool = False


class IntentScore(msgspec.Struct, frozen=True, kw_only=True):
    """One action's score for a message; the interpreter compares `confidence` to the action's threshold."""

    flow_id: str
    node_id: str
    confidence: float
    """0-1. The local engine maps its probability so that the action's learned cut lands on 0.8, the
    default `confidence_threshold`; the LLM engine reports the model's own score."""
    probability: float | None = None
    """The engine's probability for this action before that mapping (local: a softmax over the actions
    and "none of these"; llm: the model's score). None when the engine gives none."""
    learned_cut: float | None = None
    """The probability this action must reach, learned by cross-validation on its examples and the
    others' (local engine only): the engine's own "none of these" line for the action."""


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    match: IntentScore | None
    """The engine's choice; None is its explicit "none of these" outcome."""
    top: list[IntentScore] = []
    """Scored candidates, best first (both engines)."""
    engine: str = ""
    ambiguous: bool = False
    reason: str = ""
    none_probability: float | None = None
    """The engine's probability that the message matches none of the actions, when it gives one."""
    language: str = ""
    """The message's language (en, es, ar, fr, pt; "" unknown): the interpreter asks its own questions in it."""


class Extraction(msgspec.Struct, frozen=True, kw_only=True):
    values: dict[str, Any] = {}
    missing: list[str] = []
    engine: str = ""


class AIAnswer(msgspec.Struct, frozen=True, kw_only=True):
    intent: str | None = None
    confidence: float = 0.0
    text: str | None = None
    engine: str = ""
    skipped_reason: str | None = None


class WebhookOutcome(msgspec.Struct, frozen=True, kw_only=True):
    status: WebhookStatus
    status_code: int | None = None
    response: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    attempts: int = 0


class Superseded(Exception):
    """The turn no longer holds its conversation: another turn took it over, and the effect was refused.

    A runtime raises it from any call; the interpreter lets it through (no node, no port, no trace
    entry catches it), so a superseded turn stops at its first refused effect and does nothing more.
    """


class Runtime(Protocol):
    """Effects of a turn. The service implements it; tests implement it in memory.

    Any call may raise `Superseded`: the turn ends there.
    """

    async def send_message(self, text: str, *, message_type: str) -> None:
        """Send `text` to the customer (marketing, support or ai)."""

    async def write_ai_control(self, *, ai_enabled: bool, custom_prompt: str | None) -> None:
        """Store the whole AI control state of the conversation."""

    async def merge_ai_context(self, data: dict) -> dict:
        """Merge `data` into the stored context and return the merged context."""

    async def reset_ai_context(self) -> None:
        """Clear the context and the AI's conversation history."""

    async def set_conversation_status(self, status: str) -> None:
        """Set the conversation's status (open, pending, closed, ...)."""

    async def add_tag(self, tag: str) -> bool:
        """True if the tag was not there before."""

    async def remove_tag(self, tag: str) -> bool:
        """True if the tag was there before."""

    async def call_webhook(self, call: WebhookCall) -> WebhookOutcome:
        """Render and send the request; "scheduled" when retries go on in the background."""

    async def detect_intent(self, text: str, candidates: list[IntentCandidate]) -> Detection:
        """Score `text` against the intent triggers; the best match, the top scores and the engine."""

    async def extract_variables(self, text: str, variables: list[VariableSpec]) -> Extraction:
        """Typed values for the variables found in `text`, and the required ones still missing."""

    async def classify_reply(self, text: str) -> str:
        """A ReplyClass value: "approve", "reject" or "unclear"."""

    async def save_pending(self, pending: PendingAction, *, message: str) -> None:
        """Persist (insert or update by id) the pending action and ask the customer `message`."""

    async def resolve_pending(self, pending: PendingAction, status: ActionRunStatus) -> bool:
        """Compare-and-set the pending action's status; False means someone else moved it."""

    async def answer_with_ai(self, turn: Turn, ai: AIState) -> AIAnswer:
        """The core-intent personality's reply (None text when it skips, e.g. AI disabled)."""
