"""Confirmation replies: approve / reject / unclear across languages, negation and emojis."""

from __future__ import annotations

import pytest

from app.services.ai.lexicon import classify_reply


@pytest.mark.parametrize(
    "reply",
    [
        "yes",
        "Yes please!",
        "yeah",
        "ok",
        "sure, go ahead",
        "Confirm",
        "ok 👍",
        "👍",
        "no, go ahead",
        "no problem",
        "sí",
        "Si",
        "claro que sí",
        "vale",
        "de acuerdo",
        "نعم",
        "أجل",
        "أكيد",
        "موافق",
        "تمام",
        "oui",
        "sim",
    ],
)
def test_approvals(reply: str) -> None:
    assert classify_reply(reply) == "approve"


@pytest.mark.parametrize(
    "reply",
    [
        "no",
        "nope",
        "Cancel",
        "stop!",
        "don't do it",
        "not now",
        "not ok",
        "yes but not now",
        "👎",
        "no gracias",
        "cancelar",
        "todavía no",
        "لا",
        "لا شكرا",
        "إلغاء",
        "الغاء",
        "non merci",
        "não",
    ],
)
def test_rejections(reply: str) -> None:
    assert classify_reply(reply) == "reject"


@pytest.mark.parametrize(
    "reply", ["", "what is this?", "maybe", "I don't know", "quizás", "ربما", "how much is it?"]
)
def test_unclear(reply: str) -> None:
    assert classify_reply(reply) == "unclear"
