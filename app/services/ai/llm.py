"""The LLM engine: intents, variables, reply classification and personality replies over any OpenAI-compatible API.

Structured answers use a forced tool call (the widest-supported structured output of
OpenAI-compatible servers); an answer that arrives as JSON content instead is accepted too.
`LLMClient` knows nothing of workspaces, quotas or fallbacks: it raises `LLMFailure` with a short
reason, and `Understanding` lets the local engine decide.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec
import openai
from openai import AsyncOpenAI

from app.services.ai.classifier import Classification, IntentScoreItem, IntentSpec
from app.services.cache import BoundedCache
from flows.runtime import Detection, IntentCandidate, IntentScore
from flows.schema import TrainingExample

log = logging.getLogger(__name__)

ENGINE_LLM = "llm"
MAX_RETRIES = 2
"""Retries on 408/409/429/5xx and connection errors (the SDK backs off with jitter and honours Retry-After)."""
MAX_EXAMPLES_PER_ACTION = 8
"""Examples of each action shown to the model: enough to define it, bounded so 100 actions fit a prompt."""
MAX_TEXT_CHARS = 4000
"""A customer message longer than this is cut before it is sent (the prompt stays bounded)."""
REPLY_MAX_TOKENS = 500
MAX_CLIENTS = 512
_NONE = "none"


class LLMFailure(Exception):
    """The LLM gave no usable answer; `reason` is short and goes into the engine name and the trace."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LLMConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how to call the LLM (the workspace's settings or the environment's)."""

    api_key: str
    model: str
    base_url: str = ""
    """Empty: the SDK's default (api.openai.com)."""


class LLMUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class VariableRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One variable to extract: its name, the question that asks for it, and its type."""

    name: str
    prompt: str = ""
    type: str = "text"
    """number | email | phone | money | date | product | text"""


# --- prompts -------------------------------------------------------------------------------------

DETECT_SYSTEM = (
    "You route a customer's chat message to one of a business's actions. Pick the action the message asks "
    'for, or "none" when no action fits (a question, small talk, a complaint, or a different request). '
    "confidence is your probability, from 0 to 1, that the chosen action is what the customer wants: use "
    "values under 0.8 when you are unsure. In scores, give every action that could plausibly fit its own "
    "probability (the chosen one included; leave out actions that clearly do not fit). The message may be "
    "in any language. Answer only by calling the tool choose_action."
)
EXTRACT_SYSTEM = (
    "You extract values from a customer's chat message for a business action. Fill each field only with "
    'what the message states; use null when it does not say. Never guess. Numbers are numbers ("three" '
    'and "٣" are 3); dates are YYYY-MM-DD. Answer only by calling the tool extract_variables.'
)
CONFIRM_SYSTEM = (
    "The customer was asked to confirm an action. Decide whether their reply approves it, rejects it, or "
    "is unclear (a question, something else, or both at once). Any language. Answer only by calling the "
    "tool classify_reply."
)
CUSTOM_PROMPT_HEADING = "Instructions for this conversation (they take precedence over the above):"
CONTEXT_HEADING = "Facts about this customer and conversation (JSON); use them when they help:"

_JSON_TYPES: dict[str, dict[str, Any]] = {
    "number": {"type": ["number", "null"]},
    "money": {
        "anyOf": [
            {"type": "null"},
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["amount", "currency"],
                "properties": {
                    "amount": {"type": "number"},
                    "currency": {"type": "string", "description": "ISO 4217 code"},
                },
            },
        ]
    },
    "date": {"type": ["string", "null"], "description": "YYYY-MM-DD"},
}
_STRING_TYPE: dict[str, Any] = {"type": ["string", "null"]}


def personality_system_prompt(
    system_prompt: str, *, custom_prompt: str | None, context: dict[str, Any]
) -> str:
    """The system message of a personality reply.

    A conversation's custom prompt extends the personality's prompt rather than replacing it: the
    personality keeps its role and its rules (e.g. "never ask for full card numbers") and the custom
    prompt, placed last and marked as taking precedence, adds persona and instructions on top.
    """
    parts = [system_prompt.strip()]
    if custom_prompt and custom_prompt.strip():
        parts.append(f"{CUSTOM_PROMPT_HEADING}\n{custom_prompt.strip()}")
    if context:
        parts.append(
            f"{CONTEXT_HEADING}\n{json.dumps(context, ensure_ascii=False, sort_keys=True, default=str)}"
        )
    return "\n\n".join(p for p in parts if p)


def history_messages(history: Sequence[dict[str, str]], text: str) -> list[dict[str, str]]:
    """The conversation window as chat messages, ending with the customer's current message."""
    out = [
        {"role": "assistant" if h.get("role") == "assistant" else "user", "content": str(h.get("text", ""))}
        for h in history
        if h.get("text")
    ]
    if not out or out[-1] != {"role": "user", "content": text}:
        out.append({"role": "user", "content": text})
    return out


def _tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


_FENCE_RE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def _parse_json_object(raw: str, *, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_FENCE_RE.sub("", raw.strip()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise LLMFailure(f"bad answer: not JSON ({what})") from exc
    if not isinstance(value, dict):
        raise LLMFailure(f"bad answer: not a JSON object ({what})")
    return value


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", ""))
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if float(number).is_integer() else float(number)


def coerce_value(value: Any, kind: str) -> Any:
    """The model's value in the variable's type, or None when it is not one."""
    if value is None:
        return None
    if kind == "number":
        return _number(value)
    if kind == "money":
        if isinstance(value, dict):
            amount = _number(value.get("amount"))
            currency = str(value.get("currency") or "").upper()
            return {"amount": amount, "currency": currency} if amount is not None else None
        amount = _number(value)
        return {"amount": amount, "currency": ""} if amount is not None else None
    if isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _scores(raw: Any, ids: Sequence[str]) -> dict[str, float]:
    """The model's per-action scores by prompt id; unknown ids and non-numbers are dropped."""
    out: dict[str, float] = {}
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        action_id, score = str(item.get("action_id") or ""), _number(item.get("score"))
        if action_id in ids and score is not None:
            out[action_id] = max(out.get(action_id, 0.0), min(1.0, max(0.0, float(score))))
    return out


def _scored(
    candidates: Sequence[IntentCandidate], ids: Sequence[str], scores: dict[str, float]
) -> list[IntentScore]:
    """Scored candidates, best first (ties keep the prompt's order)."""
    items = [
        IntentScore(
            flow_id=candidates[ids.index(i)].flow_id,
            node_id=candidates[ids.index(i)].node_id,
            confidence=round(score, 4),
            probability=round(score, 4),
        )
        for i, score in scores.items()
    ]
    return sorted(items, key=lambda s: -s.confidence)


def _blocked_reason(exc: BaseException) -> str:
    """The address guard's reason when it refused the connection (app.http.transport says "blocked: ...")."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if text.startswith("blocked: "):
            return text.removeprefix("blocked: ")
        seen = seen.__cause__ or seen.__context__
    return ""


class LLMClient:
    """Calls chat completions with one AsyncOpenAI client per (base URL, key)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        max_retries: int = MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.http_client = http_client  # the process's pool (app.http.transport), when the root gives one
        # One per (base URL, key) in use; bounded, since each workspace may bring its own.
        self._clients: BoundedCache[tuple[str, str], AsyncOpenAI] = BoundedCache(max_entries=MAX_CLIENTS)

    def client(self, config: LLMConfig) -> AsyncOpenAI:
        key = (config.base_url, config.api_key)
        client = self._clients.get(key)
        if client is None:
            client = AsyncOpenAI(
                api_key=config.api_key,
                base_url=config.base_url or None,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
                http_client=self.http_client,  # type: ignore[arg-type]  # it takes httpx clients too
            )
            self._clients.put(key, client)
        return client

    async def aclose(self) -> None:
        clients = self._clients.values()
        self._clients.clear()
        for client in clients:
            await client.close()

    async def _complete(
        self,
        config: LLMConfig,
        messages: list[dict[str, Any]],
        *,
        tool: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> tuple[Any, LLMUsage]:
        """One completion (with the SDK's retries), bounded as a whole by `timeout_s`."""
        options: dict[str, Any] = {"model": config.model, "messages": messages, "temperature": 0}
        if tool is not None:
            options["tools"] = [tool]
            options["tool_choice"] = {"type": "function", "function": {"name": tool["function"]["name"]}}
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.client(config).chat.completions.create(**options)
        except (TimeoutError, openai.APITimeoutError) as exc:
            raise LLMFailure(f"timeout after {self.timeout_s:g} s") from exc
        except openai.APIStatusError as exc:
            if 300 <= exc.status_code < 400:
                # app.http.transport refuses redirects: the key and the text go only to the base URL.
                raise LLMFailure(
                    f"HTTP {exc.status_code}: the server redirected elsewhere and redirects are not followed; "
                    "set the base URL to the final address"
                ) from exc
            retried = " after retries" if exc.status_code in (408, 409, 429) or exc.status_code >= 500 else ""
            raise LLMFailure(f"HTTP {exc.status_code}{retried}") from exc
        except openai.APIConnectionError as exc:
            blocked = _blocked_reason(exc)
            if blocked:
                raise LLMFailure(
                    f"{config.base_url or 'the API'} refused by the address guard: {blocked}"
                ) from exc
            raise LLMFailure(f"cannot connect to {config.base_url or 'the API'}") from exc
        except openai.OpenAIError as exc:
            raise LLMFailure(f"bad answer: {type(exc).__name__}") from exc
        usage = LLMUsage(
            prompt_tokens=int(getattr(response.usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(response.usage, "completion_tokens", 0) or 0),
        )
        if not response.choices:
            raise LLMFailure("bad answer: no choices")
        message = response.choices[0].message
        if tool is None:
            content = (message.content or "").strip()
            if not content:
                raise LLMFailure("bad answer: empty reply")
            return content, usage
        name = tool["function"]["name"]
        for call in message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is not None and function.name == name:
                return _parse_json_object(function.arguments, what=f"{name} arguments"), usage
        if message.content:
            # Some compatible servers answer a forced tool call as JSON text.
            return _parse_json_object(message.content, what="the answer"), usage
        raise LLMFailure(f"bad answer: no {name} call")

    # --- the engine's operations ------------------------------------------------------------------

    async def detect(
        self, config: LLMConfig, text: str, candidates: Sequence[IntentCandidate]
    ) -> tuple[Detection, LLMUsage]:
        ids = [f"a{i + 1}" for i in range(len(candidates))]
        actions = [
            {
                "id": ids[i],
                "name": c.display_name,
                "description": c.description,
                "examples": [e.text for e in c.training_examples[:MAX_EXAMPLES_PER_ACTION]],
            }
            for i, c in enumerate(candidates)
        ]
        tool = _tool(
            "choose_action",
            "The action the customer's message asks for.",
            {
                "action_id": {"type": "string", "enum": [*ids, _NONE]},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "scores": {
                    "type": "array",
                    "description": "Each plausible action's probability of being what the customer wants.",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["action_id", "score"],
                        "properties": {
                            "action_id": {"type": "string", "enum": ids},
                            "score": {"type": "number", "minimum": 0, "maximum": 1},
                        },
                    },
                },
                "reasons": {"type": "string", "description": "One short sentence."},
            },
        )
        user = json.dumps({"actions": actions, "message": text[:MAX_TEXT_CHARS]}, ensure_ascii=False)
        answer, usage = await self._complete(
            config,
            [{"role": "system", "content": DETECT_SYSTEM}, {"role": "user", "content": user}],
            tool=tool,
        )
        action_id = str(answer.get("action_id") or _NONE)
        confidence = _number(answer.get("confidence"))
        reasons = str(answer.get("reasons") or "")[:500]
        if action_id != _NONE and action_id not in ids:
            raise LLMFailure(f"bad answer: unknown action id {action_id[:40]!r}")
        scores = _scores(answer.get("scores"), ids)
        if action_id == _NONE:
            top = _scored(candidates, ids, scores)
            return Detection(
                match=None, top=top, engine=ENGINE_LLM, reason=reasons or "no action fits"
            ), usage
        if confidence is None:
            raise LLMFailure("bad answer: confidence is not a number")
        # The chosen action's confidence is the model's word for it, whatever its scores list said.
        scores[action_id] = min(1.0, max(0.0, float(confidence)))
        top = _scored(candidates, ids, scores)
        chosen = candidates[ids.index(action_id)]
        match = next(s for s in top if (s.flow_id, s.node_id) == (chosen.flow_id, chosen.node_id))
        return Detection(match=match, top=top, engine=ENGINE_LLM, reason=reasons), usage

    async def extract(
        self, config: LLMConfig, text: str, variables: Sequence[VariableRequest]
    ) -> tuple[dict[str, Any], LLMUsage]:
        """Typed values by variable name; a variable the message does not state is absent."""
        properties: dict[str, Any] = {}
        for v in variables:
            schema = dict(_JSON_TYPES.get(v.type, _STRING_TYPE))
            hint = v.prompt or v.name.replace("_", " ")
            schema["description"] = f"{hint} ({v.type})"
            properties[v.name] = schema
        tool = _tool("extract_variables", "Values stated in the customer's message.", properties)
        answer, usage = await self._complete(
            config,
            [
                {"role": "system", "content": EXTRACT_SYSTEM},
                {"role": "user", "content": text[:MAX_TEXT_CHARS]},
            ],
            tool=tool,
        )
        values: dict[str, Any] = {}
        for v in variables:
            value = coerce_value(answer.get(v.name), v.type)
            if value is not None:
                values[v.name] = value
        return values, usage

    async def classify_reply(self, config: LLMConfig, text: str) -> tuple[str, LLMUsage]:
        tool = _tool(
            "classify_reply",
            "What the customer's reply means.",
            {"decision": {"type": "string", "enum": ["approve", "reject", "unclear"]}},
        )
        answer, usage = await self._complete(
            config,
            [
                {"role": "system", "content": CONFIRM_SYSTEM},
                {"role": "user", "content": text[:MAX_TEXT_CHARS]},
            ],
            tool=tool,
        )
        decision = str(answer.get("decision") or "")
        if decision not in ("approve", "reject", "unclear"):
            raise LLMFailure(f"bad answer: decision {decision[:40]!r}")
        return decision, usage

    async def reply(
        self, config: LLMConfig, *, system: str, history: Sequence[dict[str, str]], text: str
    ) -> tuple[str, LLMUsage]:
        messages = [{"role": "system", "content": system}, *history_messages(history, text[:MAX_TEXT_CHARS])]
        return await self._complete(config, messages, max_tokens=REPLY_MAX_TOKENS)


# --- eval-intents --engine llm ----------------------------------------------------------------------


class EvalLLMEngine:
    """evaluate.IntentEngine over the LLM: a synchronous classify() for the `eval-intents` command."""

    def __init__(self, specs: Sequence[IntentSpec], *, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config
        self.candidates = [
            IntentCandidate(
                flow_id=s.key,
                node_id="",
                display_name=s.key,
                description=s.description,
                training_examples=[TrainingExample(text=e.text) for e in s.examples],
            )
            for s in specs
        ]
        self.failures = 0
        self.usage = LLMUsage()
        self._loop = asyncio.new_event_loop()

    def classify(self, text: str, *, top_k: int = 5) -> Classification:
        try:
            detection, usage = self._loop.run_until_complete(
                self.client.detect(self.config, text, self.candidates)
            )
        except LLMFailure as exc:
            # One failed call counts as "matches nothing" rather than ending the whole evaluation.
            self.failures += 1
            log.warning(
                "llm detection failed during evaluation", extra={"reason": exc.reason, "text": text[:80]}
            )
            return Classification(best=None, top=[], out_of_scope=True, engine=ENGINE_LLM)
        self.usage = LLMUsage(
            self.usage.prompt_tokens + usage.prompt_tokens,
            self.usage.completion_tokens + usage.completion_tokens,
        )
        top = [
            IntentScoreItem(
                key=t.flow_id, confidence=t.confidence, similarity=t.confidence, probability=t.confidence
            )
            for t in detection.top
        ]
        if detection.match is None:
            return Classification(best=None, top=top, out_of_scope=True, engine=ENGINE_LLM)
        best = next(t for t in top if t.key == detection.match.flow_id)
        return Classification(best=best, top=top, out_of_scope=False, engine=ENGINE_LLM)

    def close(self) -> None:
        self._loop.run_until_complete(self.client.aclose())
        self._loop.close()
