"""Replies without an LLM follow the customer's language, or the one the flow's custom prompt names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.services.ai import language
from app.services.ai.hybrid import core_intent_model
from app.services.ai.personalities import DEFAULTS, CoreIntent, PersonalityRead
from app.services.ai.understanding import fallback_reply
from flows.phrases import ask_variable, confirm_action

EVAL = Path(__file__).resolve().parents[1] / "data" / "core_intents_eval.jsonl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("order #4411, still nothing", "en"),
        ("mi pedido no ha llegado", "es"),
        ("وين طلبي؟", "ar"),
        ("où est ma commande ?", "fr"),
        ("cadê meu pedido? ainda não chegou", "pt"),
        ("12345", "en"),
    ],
)
def test_detect(text: str, expected: str) -> None:
    assert language.detect(text) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Always answer in Spanish.", "es"),
        ("Responde siempre en español, con tono cercano", "es"),
        ("Réponds en français", "fr"),
        ("أجب باللغة العربية", "ar"),
        ("You are a premium assistant for {{ contact.first_name }}.", None),
        (None, None),
    ],
)
def test_requested(prompt: str | None, expected: str | None) -> None:
    assert language.requested(prompt) == expected


def test_fallback_follows_the_customer_then_the_custom_prompt() -> None:
    support = DEFAULTS[CoreIntent.SUPPORT]
    assert fallback_reply(support, "mi pedido no ha llegado", custom_prompt=None).startswith("Lamentamos")
    assert fallback_reply(support, "وين طلبي", custom_prompt=None) == language.fallback_text("support", "ar")
    assert fallback_reply(support, "where is my order", custom_prompt="Answer in Portuguese.").startswith(
        "Sentimos"
    )
    assert fallback_reply(support, "hello", custom_prompt=None) == support.fallback_text


def test_a_workspace_fallback_is_sent_as_written() -> None:
    own = PersonalityRead(
        intent=CoreIntent.SALES, system_prompt="", fallback_text="Gracias!", customised=True
    )
    assert fallback_reply(own, "thanks, how much is it?", custom_prompt=None) == "Gracias!"


@pytest.mark.parametrize("intent", [i.value for i in CoreIntent])
@pytest.mark.parametrize("lang", language.LANGUAGES)
def test_every_core_personality_has_every_language(intent: str, lang: str) -> None:
    assert language.fallback_text(intent, lang)


def test_interpreter_questions_in_five_languages() -> None:
    assert ask_variable("quantity", "es") == "¿Me podrías indicar quantity?"
    assert ask_variable("shoe_size", "xx") == "Could you tell me the shoe size?"
    assert "نعم" in confirm_action("Create order", "ar")
    assert "oui ou non" in confirm_action("Create order", "fr")
    assert "sim ou não" in confirm_action("Create order", "pt")


def test_core_intent_accuracy_on_the_labelled_set() -> None:
    """205 messages in five languages, written for this and never trained on (tests/data/)."""
    rows = [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 200 and {r["language"] for r in rows} == set(language.LANGUAGES)
    model = core_intent_model()
    right = 0
    for row in rows:
        result = model.classify(row["text"])
        best = result.top[0]
        predicted = "general" if (result.none_probability or 0) > (best.probability or 0) else best.key
        right += predicted == row["intent"]
    # Measured 0.756 when written (the previous engine: 0.712); a floor, so a regression shows.
    assert right / len(rows) >= 0.72
