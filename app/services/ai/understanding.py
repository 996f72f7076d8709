"""Understanding for the interpreter's ports: intent detection, variables, replies, AI answers.

The offline engine decides whenever no LLM is configured (or when the LLM fails); every
result names the engine that produced it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any

import msgspec

from app.services.ai import classifier as local
from app.services.ai.personalities import CoreIntent, get_personality
from flows.ports import AIAnswer, Detection, Extraction, IntentCandidate, IntentScore
from flows.schema import VariableSpec
from flows.turn import AIState, Turn

log = logging.getLogger(__name__)

_MODEL_CACHE_SIZE = 256


def _candidates_key(candidates: list[IntentCandidate]) -> str:
    digest = hashlib.sha256()
    for c in candidates:
        digest.update(f"{c.flow_id}\x00{c.node_id}\x00{c.description}\x00".encode())
        for ex in c.training_examples:
            digest.update(ex.text.encode() + b"\x01")
    return digest.hexdigest()


def candidate_key(c: IntentCandidate) -> str:
    return f"{c.flow_id}/{c.node_id}"


class LocalEngine:
    """The offline engine: trained models are cached per set of candidates (i.e. per save)."""

    name = local.ENGINE_LOCAL

    def __init__(self) -> None:
        self._models: OrderedDict[str, local.LocalClassifier] = OrderedDict()

    def model_for(self, candidates: list[IntentCandidate]) -> local.LocalClassifier:
        key = _candidates_key(candidates)
        model = self._models.get(key)
        if model is None:
            specs = [
                local.IntentSpec(
                    key=candidate_key(c),
                    examples=[local.IntentExample(text=e.text, language=e.language) for e in c.training_examples]
                    or [local.IntentExample(text=c.display_name)],
                    description=c.description,
                )
                for c in candidates
            ]
            model = local.LocalClassifier.train(specs)
            self._models[key] = model
            if len(self._models) > _MODEL_CACHE_SIZE:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(key)
        return model

    def detect(self, text: str, candidates: list[IntentCandidate], *, ambiguity_margin: float) -> Detection:
        if not candidates or not text.strip():
            return Detection(match=None, top=[], engine=self.name, reason="no intent actions or no text")
        by_key = {candidate_key(c): c for c in candidates}
        result = self.model_for(candidates).classify(text, top_k=5)
        top = [IntentScore(flow_id=by_key[s.key].flow_id, node_id=by_key[s.key].node_id,
                           confidence=round(s.confidence, 4)) for s in result.top if s.key in by_key]
        if result.out_of_scope or result.best is None:
            return Detection(match=None, top=top, engine=self.name, reason="out of scope: no example is close")
        best = by_key[result.best.key]
        match = IntentScore(flow_id=best.flow_id, node_id=best.node_id, confidence=round(result.best.confidence, 4))
        ambiguous = len(result.top) > 1 and (result.top[0].confidence - result.top[1].confidence) < ambiguity_margin \
            and result.top[1].confidence >= by_key[result.top[1].key].confidence_threshold
        return Detection(match=match, top=top, engine=self.name, ambiguous=ambiguous,
                         reason="two actions match almost equally" if ambiguous else "")


class Understanding:
    """What ServiceRuntime and the tester call; chooses the engine per workspace."""

    def __init__(self, *, ambiguity_margin: float) -> None:
        self.local = LocalEngine()
        self.ambiguity_margin = ambiguity_margin

    async def detect_intent(self, workspace_id: str, text: str, candidates: list[IntentCandidate]) -> Detection:
        return self.local.detect(text, candidates, ambiguity_margin=self.ambiguity_margin)

    async def extract_variables(self, workspace_id: str, text: str, variables: list[VariableSpec]) -> Extraction:
        from app.services.ai import extract as local_extract

        specs = [local_extract.VariableSpec(name=v.name, prompt=v.prompt, required=v.required, default=v.default,
                                            type=v.type or "") for v in variables]
        result = local_extract.extract_variables(text, specs)
        return Extraction(values=dict(result.values), missing=list(result.missing), engine=result.engine)

    async def classify_reply(self, workspace_id: str, text: str) -> str:
        from app.services.ai import lexicon

        return lexicon.classify_reply(text)

    def core_intent(self, text: str) -> tuple[CoreIntent, float, list[dict[str, Any]]]:
        result = local.core_intent_classifier().classify(text, top_k=5)
        top = [{"intent": s.key, "confidence": round(s.confidence, 4)} for s in result.top]
        if result.best is None or result.out_of_scope:
            return CoreIntent.GENERAL, result.best.confidence if result.best else 0.0, top
        return CoreIntent(result.best.key), result.best.confidence, top

    async def answer(self, workspace_id: str, turn: Turn, ai: AIState, *, history: list[dict[str, str]],
                     offline: bool = False) -> AIAnswer:
        if not ai.ai_enabled:
            return AIAnswer(engine=self.local.name, skipped_reason="AI is disabled for this conversation")
        intent, confidence, _ = self.core_intent(turn.text)
        personality = await get_personality(workspace_id, intent)
        return AIAnswer(intent=intent.value, confidence=round(confidence, 4), text=personality.fallback_text,
                        engine="fallback")

