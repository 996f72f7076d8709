"""The offline intent engine: embeddings + TF-IDF, learned cuts, negative examples, "none of these"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from app.services.ai.classifier import IntentExample, IntentSpec
from app.services.ai.hybrid import AUTO_THRESHOLD, HybridClassifier, HybridConfig, core_intent_model, rescale
from tests.support.stack import ROOT

ORDER = [
    "I want to order a pizza",
    "place an order for two shirts",
    "I'd like to buy a lamp",
    "quiero hacer un pedido",
]
NOT_ORDER = ["where is my order", "my order hasn't arrived", "cancel my order"]


def spec(key: str, texts: list[str], negatives: list[str] | None = None) -> IntentSpec:
    return IntentSpec(
        key=key,
        examples=[IntentExample(text=t) for t in texts],
        negatives=[IntentExample(text=t) for t in negatives or []],
    )


@pytest.fixture(scope="module")
def buy_action() -> HybridClassifier:
    return HybridClassifier.train(
        [spec("buy_phone", ["I want to buy 3 iPhones", "أريد شراء آيفون", "quiero comprar un iphone"])]
    )


@pytest.fixture(scope="module")
def workspace() -> HybridClassifier:
    return HybridClassifier.train(
        [
            spec("buy_phone", ["I want to buy 3 iPhones", "أريد شراء آيفون", "quiero comprar un iphone"]),
            spec(
                "track_order",
                ["where is my order?", "track my package", "¿dónde está mi pedido?", "وين طلبي"],
            ),
            spec(
                "book_table",
                ["book a table for two tonight", "reservar una mesa para cuatro", "أريد حجز طاولة"],
            ),
        ]
    )


@pytest.mark.parametrize(
    "message", ["can I order two Galaxy phones", "بدي اشتري ايفون", "quiero comprar dos iPhone 15"]
)
def test_one_action_matches_paraphrases_in_three_languages(
    buy_action: HybridClassifier, message: str
) -> None:
    result = buy_action.classify(message)
    assert result.best is not None and result.best.key == "buy_phone"
    assert result.best.confidence >= AUTO_THRESHOLD
    assert result.best.probability is not None and result.best.cut is not None
    assert result.best.probability >= result.best.cut


@pytest.mark.parametrize(
    "message", ["what's the weather", "¿qué tiempo hace hoy?", "ما هو الطقس اليوم؟", "tell me a joke"]
)
def test_everyday_talk_is_none_of_these(buy_action: HybridClassifier, message: str) -> None:
    result = buy_action.classify(message)
    assert result.out_of_scope and result.best is None
    assert result.top[0].confidence < AUTO_THRESHOLD
    assert result.none_probability is not None and result.none_probability > result.top[0].probability


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("has my parcel shipped yet", "track_order"),
        ("dónde está mi paquete", "track_order"),
        ("table for 4 tomorrow please", "book_table"),
        ("I'd like to purchase an iPhone 15", "buy_phone"),
    ],
)
def test_workspace_picks_the_right_action(workspace: HybridClassifier, message: str, expected: str) -> None:
    assert workspace.classify(message).top[0].key == expected


def test_every_action_has_a_learned_cut(workspace: HybridClassifier) -> None:
    cuts = workspace.cuts
    assert set(cuts) == {"buy_phone", "track_order", "book_table"}
    assert all(0.0 < c < 1.0 for c in cuts.values())


def test_negative_examples_turn_a_near_miss_into_none_of_these() -> None:
    without = HybridClassifier.train([spec("create_order", ORDER)]).classify("where is my order?")
    with_negatives = HybridClassifier.train([spec("create_order", ORDER, NOT_ORDER)]).classify(
        "where is my order?"
    )
    assert without.best is not None and without.best.key == "create_order"
    assert with_negatives.out_of_scope and with_negatives.best is None
    kept = HybridClassifier.train([spec("create_order", ORDER, NOT_ORDER)]).classify(
        "I want to order 3 lamps"
    )
    assert kept.best is not None and kept.best.key == "create_order"


def test_rescale_puts_the_cut_on_the_default_threshold() -> None:
    assert rescale(0.3, 0.3) == pytest.approx(AUTO_THRESHOLD)
    assert rescale(0.15, 0.3) == pytest.approx(AUTO_THRESHOLD / 2)
    assert rescale(1.0, 0.3) == pytest.approx(1.0)
    assert rescale(0.29, 0.3) < AUTO_THRESHOLD < rescale(0.31, 0.3)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("order #4411, still nothing", "support"),
        ("how much is the pro plan", "sales"),
        ("my app crashes on login", "technical"),
        ("I was charged twice", "billing"),
        ("mi pedido no ha llegado", "support"),
    ],
)
def test_core_intents(message: str, expected: str) -> None:
    assert core_intent_model().classify(message).top[0].key == expected


def test_model_loads_with_no_network() -> None:
    """The packaged model loads and classifies inside a private network namespace (nothing downloads)."""
    unshare = shutil.which("unshare")
    assert unshare, "util-linux's unshare is needed for this test (apt-get install util-linux)"
    code = (
        "from app.services.ai.hybrid import core_intent_model;"
        "print(core_intent_model().classify('I was charged twice').top[0].key)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [unshare, "-n", sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "billing"


def test_one_negative_example_vetoes_its_own_text_and_near_copies() -> None:
    model = HybridClassifier.train([spec("create_order", ORDER, ["where is my order?"])])
    assert model.classify("where is my order?").top[0].probability == 0.0
    near = model.classify("Where is my order")
    assert near.out_of_scope and near.top[0].probability < near.top[0].cut
    kept = model.classify("I'd like to order two lamps")
    assert kept.best is not None and kept.best.key == "create_order"


SPANISH = [
    spec(
        "weather",
        [
            "que tiempo hara mañana en madrid",
            "va a llover el sabado en sevilla",
            "pronostico del tiempo para bilbao",
            "hara frio esta noche en burgos",
            "cual es la temperatura en valencia",
        ],
    ),
    spec(
        "playlist",
        [
            "añade esta cancion a mi lista de exitos",
            "pon a shakira en mi lista para correr",
            "agrega el album a la lista de fiesta",
            "incluye esta cancion en mi lista relajante",
            "mete a rosalia en la lista del gimnasio",
        ],
    ),
    spec(
        "restaurant",
        [
            "reserva una mesa para cuatro en un italiano",
            "quiero reservar en un restaurante para dos",
            "busca mesa para seis personas el viernes",
            "reservame un sitio para cenar en granada",
            "haz una reserva en una marisqueria para tres",
        ],
    ),
]


def test_the_examples_choose_how_much_the_tfidf_scorer_weighs() -> None:
    """Spanish examples lean on the character/word scorer (the embedding's tokenizer splits Spanish words):
    the cross-validation folds pick a weight above the default; with no candidates the default stays."""
    default = HybridConfig().sparse_weight
    chosen = HybridClassifier.train(SPANISH)
    assert chosen.sparse_weight in HybridConfig().sparse_weights
    assert chosen.sparse_weight > default
    assert HybridClassifier.train(SPANISH, config=HybridConfig(sparse_weights=())).sparse_weight == default
    assert HybridClassifier.train(SPANISH, learn_thresholds=False).sparse_weight == default
    result = chosen.classify("qe tiempo ara en malaga el domingo")
    assert result.best is not None and result.best.key == "weather"


def test_the_soft_word_overlap_scores_an_actions_own_words_highest() -> None:
    from app.services.ai.hybrid import _distinct, _matched

    model = HybridClassifier.train(
        [
            spec("track", ["where is my parcel", "track my package"]),
            spec("refund", ["I want my money back", "refund please"]),
        ],
        learn_thresholds=False,
    )
    emb = model._emb
    matched = _matched(model._model, [_distinct(emb.token_ids("track my parcel"))], emb.table)[0]
    assert matched[0] == pytest.approx(1.0)  # every token is among "track"'s examples
    assert 0.0 < matched[1] < 0.9
    assert 0.0 < matched[2] < 0.9  # "none of these" has the everyday sentences' words
    everyday = _matched(model._model, [_distinct(emb.token_ids("what a lovely day today"))], emb.table)[0]
    assert everyday[2] > max(everyday[0], everyday[1])
    off = HybridClassifier.train(
        [spec("track", ["where is my parcel"]), spec("refund", ["refund please"])],
        config=HybridConfig(token_match_weight=0.0),
        learn_thresholds=False,
    )
    assert not _matched(off._model, [_distinct(emb.token_ids("track my parcel"))], emb.table).any()
