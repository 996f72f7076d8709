"""Evaluation: K-shot sampling, metrics, out-of-scope counting, and the three file formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.services.ai.evaluate import (
    LabeledText,
    auroc_score,
    evaluate,
    load_labeled,
    sample_shots,
    split_shots,
)

TRAIN = [
    LabeledText("I want to buy 3 iPhones", "buy"),
    LabeledText("quiero comprar un iphone", "buy"),
    LabeledText("أريد شراء آيفون", "buy"),
    LabeledText("I'd like to purchase a phone", "buy"),
    LabeledText("where is my order?", "track"),
    LabeledText("¿dónde está mi pedido?", "track"),
    LabeledText("وين طلبي", "track"),
    LabeledText("track my package", "track"),
    LabeledText("I want a refund", "refund"),
    LabeledText("quiero un reembolso", "refund"),
    LabeledText("أريد استرداد المبلغ", "refund"),
    LabeledText("give me my money back", "refund"),
]
TEST = [
    LabeledText("can I buy two iPhones?", "buy"),
    LabeledText("quiero comprar dos iphone", "buy"),
    LabeledText("where's my package", "track"),
    LabeledText("mi pedido, ¿dónde está?", "track"),
    LabeledText("I want my money back, refund please", "refund"),
    LabeledText("what's the weather", None),
    LabeledText("tell me a joke", None),
]


def test_sampling_is_seeded_and_per_intent() -> None:
    first = sample_shots(TRAIN, 2, seed=1)
    assert first == sample_shots(TRAIN, 2, seed=1)
    assert sorted(r.intent for r in first) == ["buy", "buy", "refund", "refund", "track", "track"]
    assert len(sample_shots(TRAIN, None, seed=1)) == len(TRAIN)


def test_split_shots_partitions_the_rows() -> None:
    train, test = split_shots(TRAIN, 1, seed=3)
    assert len(train) == 3 and len(test) == len(TRAIN) - 3
    assert not set(map(id, train)) & set(map(id, test))


def test_report_with_out_of_scope_rows() -> None:
    report = evaluate(TRAIN, TEST, shots=4, seed=1, threshold=0.5)
    assert report.engine == "local"
    assert report.intents == 3 and report.train_count == 12 and report.test_count == 7
    assert report.accuracy >= 5 / 7
    assert report.oos_recall == 1.0
    assert report.oos_precision is not None and report.oos_precision > 0.5
    assert set(report.per_intent) == {"buy", "track", "refund"}
    assert report.per_intent["buy"].support == 2
    assert 0.0 <= report.macro_f1 <= 1.0
    assert report.latency_p50_us <= report.latency_p99_us
    assert sum(sum(row.values()) for row in report.confusion.values()) == len(TEST)
    assert report.confusion["oos"] == {"oos": 2}


def test_in_scope_only_counts_top_intent() -> None:
    report = evaluate(TRAIN, [r for r in TEST if r.intent], shots=2, seed=2)
    assert report.oos_precision is None and report.oos_recall is None
    assert report.accuracy >= 0.8


def test_unknown_engine_needs_a_factory() -> None:
    with pytest.raises(ValueError, match="engine_factory"):
        evaluate(TRAIN, TEST, shots=2, seed=1, engine="llm")


def test_jsonl_loading(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = [
        {"text": "hola", "intent": "greet"},
        {"text": "weather", "intent": "oos"},
        {"text": "x", "intent": None},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    assert load_labeled(path) == [
        LabeledText("hola", "greet"),
        LabeledText("weather", None),
        LabeledText("x", None),
    ]


def test_jsonl_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "intent": "b"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        load_labeled(path)


def test_banking_style_csv(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('text,category\n"Where is my card, still?",card_arrival\nHi,greeting\n', encoding="utf-8")
    assert load_labeled(path) == [
        LabeledText("Where is my card, still?", "card_arrival"),
        LabeledText("Hi", "greeting"),
    ]


def test_snips_tsv_clean_and_typos(tmp_path: Path) -> None:
    path = tmp_path / "snips.tsv"
    path.write_text(
        "id\told_utterance\tnew_utterance\tdiffs\tslot_labels\tintent\n"
        "1\tAñade el álbum a mi lista\tAñade el álbum <en|0> mi lista\ta-<en|0>\tO\tAddToPlaylist\n"
        "2\tDime el tiempo\t<dime|0> el tiempo\tx\tO\t1\n",
        encoding="utf-8",
    )
    (tmp_path / "intent_label.txt").write_text("AddToPlaylist\nGetWeather\n", encoding="utf-8")
    assert load_labeled(path) == [
        LabeledText("Añade el álbum a mi lista", "AddToPlaylist"),
        LabeledText("Dime el tiempo", "GetWeather"),
    ]
    assert [r.text for r in load_labeled(path, variant="typos")] == [
        "Añade el álbum en mi lista",
        "dime el tiempo",
    ]


def test_out_of_scope_metrics() -> None:
    report = evaluate(TRAIN, TEST, shots=4, seed=1)
    assert report.in_scope_accuracy is not None and report.in_scope_accuracy >= 0.8
    assert report.in_scope_accuracy_no_rejection is not None
    assert report.in_scope_accuracy <= report.in_scope_accuracy_no_rejection
    assert report.oos_recall == 1.0
    assert report.auroc is not None and report.auroc > 0.9


def test_in_scope_only_has_no_out_of_scope_metrics() -> None:
    report = evaluate(TRAIN, [r for r in TEST if r.intent], shots=2, seed=2)
    assert report.auroc is None and report.oos_recall is None
    assert report.in_scope_accuracy == report.in_scope_accuracy_no_rejection


@pytest.mark.parametrize(
    ("positives", "negatives", "expected"),
    [([0.9, 0.8], [0.1, 0.2], 1.0), ([0.1], [0.9], 0.0), ([0.5, 0.5], [0.5], 0.5), ([0.9, 0.3], [0.5], 0.5)],
)
def test_auroc(positives: list[float], negatives: list[float], expected: float) -> None:
    assert auroc_score(positives, negatives) == pytest.approx(expected)


def test_eval_intents_command_prints_out_of_scope_metrics(tmp_path: Path, capsys) -> None:
    from app.cli import main

    for name, rows in (("train", TRAIN), ("test", TEST)):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": r.text, "intent": r.intent}) + "\n" for r in rows), encoding="utf-8"
        )
    assert (
        main(
            ["eval-intents", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl")]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "in_scope_accuracy", "oos_precision", "oos_recall", "auroc", "per_intent"):
        assert key in report and report[key] is not None
    assert report["oos_recall"] == 1.0
