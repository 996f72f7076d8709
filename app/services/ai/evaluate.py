"""Intent-detection evaluation: K-shot training, test-set metrics, latency; the engine of `eval-intents`."""

from __future__ import annotations

import csv
import json
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from app.services.ai.classifier import (
    ENGINE_LOCAL,
    Classification,
    IntentExample,
    IntentSpec,
)
from app.services.ai.hybrid import HybridClassifier

OOS_LABELS = frozenset({"oos", "none", ""})
MAX_CONFUSION_LABELS = 20
"""Above this many labels the confusion table keeps only the most frequent mistakes."""
TOP_CONFUSIONS = 30


class LabeledText(msgspec.Struct, frozen=True):
    text: str
    intent: str | None = None
    """`None` (or "oos" in files) means: should match no intent."""


class IntentMetrics(msgspec.Struct, frozen=True):
    precision: float
    recall: float
    f1: float
    support: int


class EvalReport(msgspec.Struct, frozen=True):
    engine: str
    shots: int | None
    seed: int
    threshold: float | None
    intents: int
    train_count: int
    test_count: int
    accuracy: float
    """Share of all test rows predicted exactly (an out-of-scope row is right when nothing matched)."""
    in_scope_accuracy: float | None
    """Share of in-scope rows matched to their intent, after rejection ("none of these" counts as wrong)."""
    in_scope_accuracy_no_rejection: float | None
    """The same when the top intent always answers: what rejection costs is the difference."""
    macro_f1: float
    per_intent: dict[str, IntentMetrics]
    oos_precision: float | None
    """Of the messages that matched nothing, the share that were out of scope."""
    oos_recall: float | None
    """Of the out-of-scope messages, the share that matched nothing."""
    auroc: float | None
    """How well the best score separates in-scope from out-of-scope rows (0.5 = chance, 1 = perfectly)."""
    latency_p50_us: float
    latency_p99_us: float
    train_ms: float
    confusion: dict[str, dict[str, int]]


class IntentEngine(Protocol):
    def classify(self, text: str, *, top_k: int = 5) -> Classification: ...


EngineFactory = Callable[[Sequence[IntentSpec]], IntentEngine]


def _label(raw: object) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip()
    return None if text.lower() in OOS_LABELS else text


_TYPO_MARK_RE = re.compile(r"<([^<>|]*)\|\d+>")


def load_labeled(path: str | Path, *, variant: str = "clean") -> list[LabeledText]:
    """Read JSON lines {"text","intent"}, a CSV with text + category/intent, or the SNIPS TSV.

    For the SNIPS TSV, `variant` "clean" reads `old_utterance`, "typos" reads `new_utterance`
    (its `<word|n>` typo markers unwrapped); numeric intents map through `intent_label.txt`.
    """
    path = Path(path)
    if variant not in {"clean", "typos"}:
        raise ValueError(f"variant {variant!r}: use 'clean' or 'typos'")
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv"}:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            rows = list(reader)
            fields = reader.fieldnames or []
        if "old_utterance" in fields:
            column = "old_utterance" if variant == "clean" else "new_utterance"
            names = _intent_names(path.parent / "intent_label.txt")
            return [
                LabeledText(
                    text=_TYPO_MARK_RE.sub(r"\1", r[column]).strip(),
                    intent=_label(
                        names[int(r["intent"])] if r["intent"].isdigit() and names else r["intent"]
                    ),
                )
                for r in rows
            ]
        label_column = "category" if "category" in fields else "intent"
        if "text" not in fields or label_column not in fields:
            raise ValueError(f"{path}: expected columns text and category (or intent), found {fields}")
        return [LabeledText(text=r["text"], intent=_label(r[label_column])) for r in rows]
    out: list[LabeledText] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f'{path}:{number}: not a JSON line ({exc.msg}); write one {{"text", "intent"}} per line'
                ) from exc
            out.append(LabeledText(text=str(row["text"]), intent=_label(row.get("intent"))))
    return out


def _intent_names(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sample_shots(rows: Sequence[LabeledText], shots: int | None, seed: int) -> list[LabeledText]:
    """K rows per intent, drawn with `seed` from the rows sorted by text (stable across runs)."""
    by_intent: dict[str, list[LabeledText]] = {}
    for row in rows:
        if row.intent is not None:
            by_intent.setdefault(row.intent, []).append(row)
    rng = random.Random(seed)
    out: list[LabeledText] = []
    for intent in sorted(by_intent):
        items = sorted(by_intent[intent], key=lambda r: r.text)
        out.extend(items if shots is None or shots >= len(items) else rng.sample(items, shots))
    return out


def split_shots(
    rows: Sequence[LabeledText], shots: int, seed: int
) -> tuple[list[LabeledText], list[LabeledText]]:
    """Split one labelled set into K-shot training rows and the rest as test rows."""
    train = sample_shots(rows, shots, seed)
    chosen = {id(r) for r in train}
    return train, [r for r in rows if id(r) not in chosen]


def specs_from_rows(rows: Sequence[LabeledText]) -> list[IntentSpec]:
    grouped: dict[str, list[IntentExample]] = {}
    for row in rows:
        if row.intent is not None:
            grouped.setdefault(row.intent, []).append(IntentExample(text=row.text))
    return [IntentSpec(key=k, examples=v) for k, v in sorted(grouped.items())]


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def _predict(result: Classification, *, reject: bool, threshold: float | None) -> str | None:
    if not reject:
        return result.top[0].key if result.top else None
    best = result.best
    if best is None or (threshold is not None and best.confidence < threshold):
        return None
    return best.key


def evaluate(
    train: Sequence[LabeledText],
    test: Sequence[LabeledText],
    *,
    shots: int | None,
    seed: int,
    engine: str = ENGINE_LOCAL,
    threshold: float | None = None,
    engine_factory: EngineFactory | None = None,
) -> EvalReport:
    """Train one intent per label from K sampled examples, classify `test`, and measure.

    Without `oos` rows and without a threshold the prediction is the top intent (in-scope
    accuracy, as published few-shot results count it); otherwise a message whose best match
    is out of scope or under `threshold` counts as "matches nothing".
    """
    if engine_factory is None:
        if engine != ENGINE_LOCAL:
            raise ValueError(f"engine {engine!r} needs an engine_factory; only {ENGINE_LOCAL!r} is built in")
        engine_factory = HybridClassifier.train
    sampled = sample_shots(train, shots, seed)
    specs = specs_from_rows(sampled)
    started = time.perf_counter()
    model = engine_factory(specs)
    train_ms = (time.perf_counter() - started) * 1000.0

    has_oos = any(row.intent is None for row in test)
    reject = has_oos or threshold is not None
    latencies_us: list[float] = []
    pairs: list[tuple[str | None, str | None]] = []
    top_only: list[str | None] = []
    best_scores: list[float] = []
    for row in test:
        started = time.perf_counter()
        result = model.classify(row.text)
        latencies_us.append((time.perf_counter() - started) * 1e6)
        pairs.append((row.intent, _predict(result, reject=reject, threshold=threshold)))
        top_only.append(_predict(result, reject=False, threshold=None))
        best_scores.append(result.top[0].confidence if result.top else 0.0)
    latencies_us.sort()
    in_scope = [i for i, (e, _) in enumerate(pairs) if e is not None]
    in_scope_accuracy = in_scope_no_rejection = None
    if in_scope:
        in_scope_accuracy = round(sum(1 for i in in_scope if pairs[i][1] == pairs[i][0]) / len(in_scope), 4)
        in_scope_no_rejection = round(
            sum(1 for i in in_scope if top_only[i] == pairs[i][0]) / len(in_scope), 4
        )

    labels = sorted({s.key for s in specs} | {e for e, _ in pairs if e is not None})
    per_intent: dict[str, IntentMetrics] = {}
    for label in labels:
        tp = sum(1 for e, p in pairs if e == label and p == label)
        fp = sum(1 for e, p in pairs if e != label and p == label)
        fn = sum(1 for e, p in pairs if e == label and p != label)
        support = tp + fn
        if support == 0 and fp == 0:
            continue
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[label] = IntentMetrics(round(precision, 4), round(recall, 4), round(f1, 4), support)
    scored = [m for m in per_intent.values() if m.support]
    macro_f1 = sum(m.f1 for m in scored) / len(scored) if scored else 0.0

    oos_precision = oos_recall = None
    if has_oos:
        predicted_oos = [e for e, p in pairs if p is None]
        actual_oos = [p for e, p in pairs if e is None]
        oos_precision = (
            round(sum(1 for e in predicted_oos if e is None) / len(predicted_oos), 4)
            if predicted_oos
            else 0.0
        )
        oos_recall = round(sum(1 for p in actual_oos if p is None) / len(actual_oos), 4)
    auroc = None
    if has_oos and in_scope:
        auroc = round(
            auroc_score(
                [best_scores[i] for i in in_scope],
                [best_scores[i] for i, (e, _) in enumerate(pairs) if e is None],
            ),
            4,
        )

    return EvalReport(
        engine=engine,
        shots=shots,
        seed=seed,
        threshold=threshold,
        intents=len(specs),
        train_count=len(sampled),
        test_count=len(test),
        accuracy=round(sum(1 for e, p in pairs if e == p) / len(pairs), 4) if pairs else 0.0,
        in_scope_accuracy=in_scope_accuracy,
        in_scope_accuracy_no_rejection=in_scope_no_rejection,
        macro_f1=round(macro_f1, 4),
        per_intent=per_intent,
        oos_precision=oos_precision,
        oos_recall=oos_recall,
        auroc=auroc,
        latency_p50_us=round(_percentile(latencies_us, 0.5), 1),
        latency_p99_us=round(_percentile(latencies_us, 0.99), 1),
        train_ms=round(train_ms, 2),
        confusion=_confusion(pairs, big=len(labels) > MAX_CONFUSION_LABELS),
    )


def auroc_score(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a random in-scope row scores above a random out-of-scope one (ties count half)."""
    if not positives or not negatives:
        return 0.5
    ranked = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives])
    rank_sum = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += mean_rank * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _confusion(pairs: Sequence[tuple[str | None, str | None]], *, big: bool) -> dict[str, dict[str, int]]:
    counts: dict[tuple[str, str], int] = {}
    for expected, predicted in pairs:
        key = (expected or "oos", predicted or "oos")
        counts[key] = counts.get(key, 0) + 1
    if big:
        # 77 x 77 cells say nothing; the most frequent mistakes say where examples are missing.
        mistakes = sorted(((n, k) for k, n in counts.items() if k[0] != k[1]), reverse=True)[:TOP_CONFUSIONS]
        counts = {k: n for n, k in mistakes}
    table: dict[str, dict[str, int]] = {}
    for (expected, predicted), n in sorted(counts.items()):
        table.setdefault(expected, {})[predicted] = n
    return table
