"""Understanding for the interpreter's ports: intent detection, variables, replies, AI answers.

The LLM engine answers when the workspace (or the environment) configures one and the
workspace's monthly token quota is not used up; the offline engine decides otherwise, and
when the LLM fails (timeout, errors after retries, an unusable answer). Every result names
its engine: "llm", "local", "local (llm failed: <why>)", "local (llm quota reached)", and for
personality replies "fallback ..." (the personality's fallback text) in the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from typing import Any

import msgspec

from app.services.ai import classifier as local
from app.services.ai import extract as local_extract
from app.services.ai import language as languages
from app.services.ai import lexicon, llm_settings, usage
from app.services.ai.hybrid import HybridClassifier, core_intent_model
from app.services.ai.llm import (
    ENGINE_LLM,
    LLMClient,
    LLMFailure,
    LLMUsage,
    VariableRequest,
    personality_system_prompt,
)
from app.services.ai.personalities import CoreIntent, PersonalityRead, get_personality
from app.services.cache import BoundedCache
from app.settings import get_settings
from flows.runtime import (
    AIAnswer,
    Detection,
    Extraction,
    IntentCandidate,
    IntentScore,
)
from flows.schema import VariableSpec
from flows.turn import AIState, Turn

log = logging.getLogger(__name__)

MODEL_CACHE_EXAMPLES = 20_000
"""Trained models a process keeps, in training examples: a model retains about 4.3 MB per 1,000 examples
(bench: 100 actions x 10 examples), so this bounds the cache near 90 MB however many workspaces and
saved versions a worker sees. The least recently used model goes first; the newest is always kept."""
SETTINGS_TTL_S = 2.0
"""How long a process reuses a workspace's LLM settings and quota state (a change applies within this)."""
FALLBACK = "fallback"

# The flow document's variable types (and common spellings) in the extractor's vocabulary;
# "" lets the extractor infer the type from the variable's name and prompt.
_TYPE_ALIASES = {
    "string": "",
    "str": "",
    "": "",
    "integer": "number",
    "int": "number",
    "float": "number",
    "decimal": "number",
    "numeric": "number",
    "quantity": "number",
    "datetime": "date",
    "currency": "money",
    "price": "money",
}


def extractor_type(declared: str | None) -> str:
    """A flow variable's declared type as the local extractor's type ("" = infer from name and prompt)."""
    kind = (declared or "").strip().lower()
    if kind in local_extract.VARIABLE_TYPES:
        return kind
    return _TYPE_ALIASES.get(kind, "")


def _local_specs(variables: list[VariableSpec]) -> list[local_extract.VariableSpec]:
    return [
        local_extract.VariableSpec(
            name=v.name, prompt=v.prompt, required=v.required, default=v.default, type=extractor_type(v.type)
        )
        for v in variables
    ]


def _candidates_key(candidates: list[IntentCandidate]) -> str:
    digest = hashlib.sha256()
    for c in candidates:
        digest.update(f"{c.flow_id}\x00{c.node_id}\x00{c.description}\x00{c.display_name}\x00".encode())
        for ex in c.training_examples:
            digest.update(ex.text.encode() + b"\x01")
        for ex in c.negative_examples:
            digest.update(ex.text.encode() + b"\x02")
    return digest.hexdigest()


def candidate_key(c: IntentCandidate) -> str:
    return f"{c.flow_id}/{c.node_id}"


def intent_specs(candidates: list[IntentCandidate]) -> list[local.IntentSpec]:
    return [
        local.IntentSpec(
            key=candidate_key(c),
            examples=[local.IntentExample(text=e.text, language=e.language) for e in c.training_examples]
            or [local.IntentExample(text=c.display_name)],
            description=c.description,
            negatives=[local.IntentExample(text=e.text, language=e.language) for e in c.negative_examples],
        )
        for c in candidates
    ]


class LocalEngine:
    """The offline engine: trained models are cached per set of candidates (i.e. per save)."""

    name = local.ENGINE_LOCAL

    def __init__(self, *, max_examples: int = MODEL_CACHE_EXAMPLES) -> None:
        # Weighed by training examples (and negatives): what a model's memory grows with.
        self._models: BoundedCache[str, HybridClassifier] = BoundedCache(
            max_entries=max_examples, max_weight=max_examples
        )
        self._lock = threading.Lock()  # training runs in worker threads (asyncio.to_thread)

    @property
    def cached_examples(self) -> float:
        return self._models.weight

    def cached(self, candidates: list[IntentCandidate]) -> bool:
        with self._lock:
            return self._models.get(_candidates_key(candidates)) is not None

    def model_for(self, candidates: list[IntentCandidate]) -> HybridClassifier:
        """The trained model of these candidates; training runs outside the lock (in a thread, seconds)."""
        key = _candidates_key(candidates)
        with self._lock:
            model = self._models.get(key)
        if model is not None:
            return model
        specs = intent_specs(candidates)
        model = HybridClassifier.train(specs)
        with self._lock:
            first = self._models.get(key)  # trained twice at once: keep the first
            if first is not None:
                return first
            self._models.put(key, model, weight=sum(len(s.examples) + len(s.negatives) for s in specs))
        return model

    def detect(
        self, text: str, candidates: list[IntentCandidate], *, ambiguity_margin: float, top_k: int = 5
    ) -> Detection:
        if not candidates or not text.strip():
            return Detection(match=None, top=[], engine=self.name, reason="no intent actions or no text")
        by_key = {candidate_key(c): c for c in candidates}
        result = self.model_for(candidates).classify(text, top_k=top_k)
        top = [_intent_score(by_key[s.key], s) for s in result.top if s.key in by_key]
        if result.out_of_scope or result.best is None:
            return Detection(
                match=None,
                top=top,
                engine=self.name,
                reason="none of these: no action reached its learned cut",
                none_probability=result.none_probability,
            )
        match = _intent_score(by_key[result.best.key], result.best)
        ambiguous = is_ambiguous(top, candidates, ambiguity_margin)
        return Detection(
            match=match,
            top=top,
            engine=self.name,
            ambiguous=ambiguous,
            reason="two actions match almost equally" if ambiguous else "",
            none_probability=result.none_probability,
        )


def _intent_score(c: IntentCandidate, item: local.IntentScoreItem) -> IntentScore:
    return IntentScore(
        flow_id=c.flow_id,
        node_id=c.node_id,
        confidence=round(item.confidence, 4),
        probability=None if item.probability is None else round(item.probability, 4),
        learned_cut=None if item.cut is None else round(item.cut, 4),
    )


def is_ambiguous(top: list[IntentScore], candidates: list[IntentCandidate], margin: float) -> bool:
    """The runner-up also passes its threshold and is within `margin` of the best: both engines alike."""
    if len(top) < 2:
        return False
    thresholds = {(c.flow_id, c.node_id): c.confidence_threshold for c in candidates}
    first, second = top[0], top[1]
    return (first.confidence - second.confidence) < margin and second.confidence >= thresholds.get(
        (second.flow_id, second.node_id), 1.0
    )


class Understanding:
    """What ServiceRuntime and the tester call; chooses the engine per workspace and meters its use."""

    def __init__(
        self, *, ambiguity_margin: float, llm: LLMClient | None = None, settings_ttl_s: float = SETTINGS_TTL_S
    ) -> None:
        self.local = LocalEngine()
        self.ambiguity_margin = ambiguity_margin
        self.llm = llm or LLMClient(timeout_s=get_settings().ai.llm_timeout_seconds)
        self.settings_ttl_s = settings_ttl_s
        self.local_meter = usage.LocalCallMeter()
        self._settings: BoundedCache[str, llm_settings.WorkspaceLLM] = BoundedCache(
            max_entries=10_000, ttl_s=settings_ttl_s
        )
        self._quota_logged: set[tuple[str, str]] = set()

    # --- engine choice and metering ----------------------------------------------------------------

    async def _workspace_llm(self, workspace_id: str) -> llm_settings.WorkspaceLLM:
        cached = self._settings.get(workspace_id)
        if cached is not None:
            return cached
        resolved = await llm_settings.resolve(workspace_id)
        self._settings.put(workspace_id, resolved)
        return resolved

    async def _llm_for(self, workspace_id: str) -> tuple[Any, str]:
        """(LLMConfig or None, why not): "" when no LLM is configured, else the reason shown in the engine name."""
        try:
            ws = await self._workspace_llm(workspace_id)
        except Exception as exc:  # settings unreadable: the local engine still answers, and says why
            log.exception("llm settings unavailable", extra={"workspace_id": workspace_id})
            return None, f"llm settings unavailable: {type(exc).__name__}"
        if ws.config is None:
            return None, ""
        if ws.over_quota:
            month = usage.current_month()
            if (workspace_id, month) not in self._quota_logged:
                self._quota_logged.add((workspace_id, month))
                log.warning(
                    "LLM token quota reached: %d of %d tokens used in %s; the local engine and fallback texts "
                    "answer until the month ends or the quota is raised",
                    ws.tokens_used,
                    ws.monthly_token_quota,
                    month,
                    extra={
                        "workspace_id": workspace_id,
                        "month": month,
                        "tokens_used": ws.tokens_used,
                        "monthly_token_quota": ws.monthly_token_quota,
                    },
                )
            return None, "llm quota reached"
        return ws.config, ""

    async def _count_llm(self, workspace_id: str, used: LLMUsage) -> None:
        try:
            tokens = await usage.record_llm(
                workspace_id, prompt_tokens=used.prompt_tokens, completion_tokens=used.completion_tokens
            )
        except Exception:  # metering must not lose the answer already paid for; the gap is logged
            log.exception(
                "llm usage not recorded",
                extra={
                    "workspace_id": workspace_id,
                    "prompt_tokens": used.prompt_tokens,
                    "completion_tokens": used.completion_tokens,
                },
            )
            return
        cached = self._settings.get(workspace_id)
        if cached is not None:
            # This process sees its own spending at once: the quota stops the next call, not one TTL later.
            self._settings.replace(workspace_id, msgspec.structs.replace(cached, tokens_used=tokens))

    def _count_local(self, workspace_id: str) -> None:
        self.local_meter.add(workspace_id)

    def _failed(self, workspace_id: str, step: str, exc: LLMFailure) -> str:
        log.warning(
            "llm failed; the local engine decides",
            extra={"workspace_id": workspace_id, "step": step, "reason": exc.reason},
        )
        return f"llm failed: {exc.reason}"

    @staticmethod
    def _named(engine: str, why: str) -> str:
        return f"{engine} ({why})" if why else engine

    # --- the ports ------------------------------------------------------------------------------------

    async def detect_intent(
        self, workspace_id: str, text: str, candidates: list[IntentCandidate], *, top_k: int = 5
    ) -> Detection:
        """The best action (or none) with the `top_k` best-scored actions, from the LLM or the local engine."""
        why = ""
        if candidates and text.strip():
            config, why = await self._llm_for(workspace_id)
            if config is not None:
                try:
                    detection, used = await self.llm.detect(config, text, candidates)
                except LLMFailure as exc:
                    why = self._failed(workspace_id, "detect", exc)
                else:
                    await self._count_llm(workspace_id, used)
                    ambiguous = detection.match is not None and is_ambiguous(
                        detection.top, candidates, self.ambiguity_margin
                    )
                    return msgspec.structs.replace(
                        detection,
                        top=detection.top[: max(top_k, 1)],
                        ambiguous=ambiguous,
                        reason="two actions match almost equally" if ambiguous else detection.reason,
                        language=languages.detect(text),
                    )
        if candidates and not self.local.cached(candidates):
            # Training takes up to seconds for a large workspace: off the event loop, so other turns go on.
            await asyncio.to_thread(self.local.model_for, candidates)
        detection = self.local.detect(text, candidates, ambiguity_margin=self.ambiguity_margin, top_k=top_k)
        detection = msgspec.structs.replace(detection, language=languages.detect(text))
        self._count_local(workspace_id)
        if not why:
            return detection
        return msgspec.structs.replace(
            detection,
            engine=self._named(detection.engine, why),
            reason="; ".join(r for r in (why, detection.reason) if r),
        )

    async def extract_variables(
        self, workspace_id: str, text: str, variables: list[VariableSpec]
    ) -> Extraction:
        specs = _local_specs(variables)
        why = ""
        if specs and text.strip():
            config, why = await self._llm_for(workspace_id)
            if config is not None:
                requests = [
                    VariableRequest(name=s.name, prompt=s.prompt, type=local_extract.infer_type(s).value)
                    for s in specs
                ]
                try:
                    found, used = await self.llm.extract(config, text, requests)
                except LLMFailure as exc:
                    why = self._failed(workspace_id, "extract", exc)
                else:
                    await self._count_llm(workspace_id, used)
                    values: dict[str, Any] = {}
                    missing: list[str] = []
                    for s in specs:
                        value = found.get(s.name, s.default)
                        if value is None:
                            if s.required:
                                missing.append(s.name)
                            continue
                        values[s.name] = value
                    return Extraction(values=values, missing=missing, engine=ENGINE_LLM)
        result = local_extract.extract_variables(text, specs)
        self._count_local(workspace_id)
        return Extraction(
            values=dict(result.values), missing=list(result.missing), engine=self._named(result.engine, why)
        )

    async def classify_reply(self, workspace_id: str, text: str) -> str:
        """The lexicon first (instant, and right on yes/no/نعم/sí); the LLM only for what it finds unclear."""
        decision = lexicon.classify_reply(text)
        if decision == lexicon.ReplyDecision.UNCLEAR.value and text.strip():
            config, _ = await self._llm_for(workspace_id)
            if config is not None:
                try:
                    decision, used = await self.llm.classify_reply(config, text)
                except LLMFailure as exc:
                    self._failed(workspace_id, "classify_reply", exc)
                else:
                    await self._count_llm(workspace_id, used)
                    return decision
        self._count_local(workspace_id)
        return decision

    def core_intent(self, text: str) -> tuple[CoreIntent, float, list[dict[str, Any]]]:
        """The core intent of a message; "general" when everyday talk ("none") outweighs every intent."""
        result = core_intent_model().classify(text, top_k=5)
        top = [{"intent": s.key, "confidence": round(s.probability or 0.0, 4)} for s in result.top]
        best = result.top[0]
        probability = best.probability or 0.0
        if (result.none_probability or 0.0) > probability:
            return CoreIntent.GENERAL, probability, top
        return CoreIntent(best.key), probability, top

    async def answer(
        self,
        workspace_id: str,
        turn: Turn,
        ai: AIState,
        *,
        history: list[dict[str, str]],
        offline: bool = False,
    ) -> AIAnswer:
        """The core-intent personality's reply: the LLM with prompt, custom prompt, context and history,
        else the personality's fallback text. `offline` (the tester's dry run) never calls the LLM."""
        if not ai.ai_enabled:
            return AIAnswer(engine=self.local.name, skipped_reason="AI is disabled for this conversation")
        intent, confidence, _ = self.core_intent(turn.text)
        personality = await get_personality(workspace_id, intent)
        why = "offline: dry run" if offline else ""
        if not offline:
            config, why = await self._llm_for(workspace_id)
            if config is not None:
                system = personality_system_prompt(
                    personality.system_prompt, custom_prompt=ai.custom_prompt, context=dict(ai.context)
                )
                try:
                    text, used = await self.llm.reply(config, system=system, history=history, text=turn.text)
                except LLMFailure as exc:
                    why = self._failed(workspace_id, "answer", exc)
                else:
                    await self._count_llm(workspace_id, used)
                    return AIAnswer(
                        intent=intent.value, confidence=round(confidence, 4), text=text, engine=ENGINE_LLM
                    )
        self._count_local(workspace_id)
        return AIAnswer(
            intent=intent.value,
            confidence=round(confidence, 4),
            text=fallback_reply(personality, turn.text, custom_prompt=ai.custom_prompt),
            engine=self._named(FALLBACK, why),
        )


def fallback_reply(personality: PersonalityRead, text: str, *, custom_prompt: str | None) -> str:
    """The personality's fallback text in the language the custom prompt names, else the customer's.

    A workspace's own fallback text is its words: it is sent as written, in whatever language it is.
    """
    if personality.customised:
        return personality.fallback_text
    language = languages.requested(custom_prompt) or languages.detect(text)
    return languages.fallback_text(personality.intent.value, language) or personality.fallback_text
