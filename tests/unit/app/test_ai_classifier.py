"""The local few-shot classifier: multilingual matching, out of scope, calibration, persistence."""

from __future__ import annotations

import pytest

from app.services.ai.classifier import (
    IntentExample,
    IntentSpec,
    LocalClassifier,
    core_intent_classifier,
    normalize_text,
)

THRESHOLD = 0.8


@pytest.fixture(scope="module")
def buy_action() -> LocalClassifier:
    examples = ["I want to buy 3 iPhones", "أريد شراء آيفون", "quiero comprar un iphone"]
    return LocalClassifier.train(
        [IntentSpec(key="buy_phone", examples=[IntentExample(text=t) for t in examples])]
    )


@pytest.fixture(scope="module")
def workspace() -> LocalClassifier:
    specs = {
        "buy_phone": ["I want to buy 3 iPhones", "أريد شراء آيفون", "quiero comprar un iphone"],
        "track_order": ["where is my order?", "track my package", "¿dónde está mi pedido?", "وين طلبي"],
        "book_table": ["book a table for two tonight", "reservar una mesa para cuatro", "أريد حجز طاولة"],
    }
    return LocalClassifier.train(
        [IntentSpec(key=k, examples=[IntentExample(text=t) for t in texts]) for k, texts in specs.items()]
    )


@pytest.mark.parametrize(
    "message", ["can I order two Galaxy phones", "بدي اشتري ايفون", "quiero comprar dos iPhone 15"]
)
def test_action_matches_paraphrases_in_three_languages(buy_action: LocalClassifier, message: str) -> None:
    result = buy_action.classify(message)
    assert result.best is not None
    assert result.best.key == "buy_phone"
    assert result.best.confidence >= THRESHOLD
    assert result.engine == "local"


@pytest.mark.parametrize(
    "message", ["what's the weather", "¿qué tiempo hace hoy?", "ما هو الطقس اليوم؟", "tell me a joke"]
)
def test_unrelated_text_is_out_of_scope(buy_action: LocalClassifier, message: str) -> None:
    result = buy_action.classify(message)
    assert result.out_of_scope
    assert result.best is None
    assert all(item.confidence < THRESHOLD for item in result.top)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("can I order two Galaxy phones", "buy_phone"),
        ("where's my package", "track_order"),
        ("mi pedido no ha llegado, ¿dónde está?", "track_order"),
        ("احجز طاولة لشخصين", "book_table"),
        ("quiero reservar mesa para mañana", "book_table"),
    ],
)
def test_workspace_picks_the_right_action(workspace: LocalClassifier, message: str, expected: str) -> None:
    result = workspace.classify(message)
    assert result.top[0].key == expected
    assert result.top[0].confidence > result.top[1].confidence


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("How much does the premium plan cost?", "sales"),
        ("I want to buy two of these", "sales"),
        ("¿Cuánto cuesta el envío a Madrid? quiero comprar", "sales"),
        ("كم سعر هذا المنتج؟", "sales"),
        ("my order arrived damaged", "support"),
        ("mi pedido no ha llegado", "support"),
        ("طلبي لم يصل حتى الآن", "support"),
        ("hello, good morning", "general"),
        ("hola, buenos días", "general"),
        ("السلام عليكم", "general"),
        ("the app crashes when I log in", "technical"),
        ("no puedo iniciar sesión, olvidé la contraseña", "technical"),
        ("نسيت كلمة المرور", "technical"),
        ("I was charged twice, I want a refund", "billing"),
        ("necesito la factura de este mes", "billing"),
        ("أريد استرداد المبلغ", "billing"),
    ],
)
def test_core_intents_route_three_languages(message: str, expected: str) -> None:
    assert core_intent_classifier().classify(message).top[0].key == expected


def test_core_intent_classifier_is_cached() -> None:
    assert core_intent_classifier() is core_intent_classifier()


def test_confidence_grows_with_similarity(buy_action: LocalClassifier) -> None:
    for margin in (0.0, 0.1, 0.3):
        values = [buy_action.confidence(score / 20, margin) for score in range(21)]
        assert values == sorted(values)
    assert buy_action.confidence(0.05, 0.05) < 0.1
    assert buy_action.confidence(0.7, 0.7) > 0.95


def test_closer_messages_score_higher(buy_action: LocalClassifier) -> None:
    near = buy_action.classify("I want to buy 3 iPhones").top[0]
    far = buy_action.classify("can I order two Galaxy phones").top[0]
    assert near.similarity > far.similarity
    assert near.confidence > far.confidence


def test_round_trip_gives_identical_scores(workspace: LocalClassifier) -> None:
    restored = LocalClassifier.from_bytes(workspace.to_bytes())
    for message in ["can I order two Galaxy phones", "وين طلبي", "hola", "reservar una mesa"]:
        assert restored.classify(message) == workspace.classify(message)


def test_from_bytes_rejects_garbage() -> None:
    with pytest.raises(ValueError):  # msgspec.DecodeError is a ValueError
        LocalClassifier.from_bytes(b"not a model")


def test_intent_without_examples_uses_description() -> None:
    model = LocalClassifier.train(
        [
            IntentSpec(key="refund", examples=[], description="customer asks for a refund of a payment"),
            IntentSpec(key="empty", examples=[]),
        ]
    )
    assert model.keys == ["refund"]
    assert model.classify("I want a refund for my payment").top[0].key == "refund"


def test_no_intents_means_out_of_scope() -> None:
    result = LocalClassifier.train([]).classify("anything")
    assert result.out_of_scope and result.best is None and result.top == []


def test_top_k_limits_the_list(workspace: LocalClassifier) -> None:
    assert len(workspace.classify("book a table", top_k=2).top) == 2


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("أإآٱ", "اااا"),
        ("مدرسة", "مدرسه"),
        ("مستشفى", "مستشفي"),
        ("كـــتاب", "كتاب"),
        ("كِتَابٌ", "كتاب"),
        ("٣ آيفون ١٢", "3 ايفون 12"),
        ("Mañana CAFÉ", "manana cafe"),
    ],
)
def test_normalisation(raw: str, normalized: str) -> None:
    assert normalize_text(raw) == normalized
