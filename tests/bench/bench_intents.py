"""Benchmark of the local intent engine: BANKING77 and Spanish SNIPS few-shot accuracy, and latency."""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.services.ai.classifier import IntentExample, IntentSpec, LocalClassifier, core_intent_specs
from app.services.ai.evaluate import EvalReport, evaluate, load_labeled, split_shots

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "intents"
SEEDS = (1, 2, 3)
SHOTS = (5, 10)


def _summary(reports: list[EvalReport]) -> dict:
    return {
        "mean_accuracy": round(statistics.mean(r.accuracy for r in reports), 4),
        "mean_macro_f1": round(statistics.mean(r.macro_f1 for r in reports), 4),
        "per_seed": [
            {
                "seed": r.seed,
                "accuracy": r.accuracy,
                "macro_f1": r.macro_f1,
                "train_ms": r.train_ms,
                "latency_p50_us": r.latency_p50_us,
                "latency_p99_us": r.latency_p99_us,
                "test_count": r.test_count,
            }
            for r in reports
        ],
    }


def banking77() -> dict:
    train = load_labeled(DATA / "banking77" / "train.csv")
    test = load_labeled(DATA / "banking77" / "test.csv")
    return {f"{k}_shot": _summary([evaluate(train, test, shots=k, seed=s) for s in SEEDS]) for k in SHOTS}


def snips_es() -> dict:
    path = DATA / "snips_es" / "snips_es_test_typos0.1.tsv"
    out: dict = {}
    for variant in ("clean", "typos"):
        rows = load_labeled(path, variant=variant)
        out[variant] = {}
        for k in SHOTS:
            reports = []
            for seed in SEEDS:
                train, test = split_shots(rows, k, seed)
                reports.append(evaluate(train, test, shots=None, seed=seed))
            out[variant][f"{k}_shot"] = _summary(reports)
    return out


def latency_100_actions() -> dict:
    """100 actions x 10 examples: the 77 BANKING77 intents, 7 SNIPS intents and the core intents per language.

    Each action is a real intent (a workspace's actions are coherent), timed on held-out messages.
    """
    rng = random.Random(7)
    groups: dict[str, list[str]] = {}
    for row in load_labeled(DATA / "banking77" / "train.csv") + load_labeled(
        DATA / "snips_es" / "snips_es_test_typos0.1.tsv"
    ):
        groups.setdefault(row.intent or "oos", []).append(row.text)
    for spec in core_intent_specs():
        for lang in ("en", "es", "ar"):
            groups[f"{spec.key}_{lang}"] = [e.text for e in spec.examples if e.language == lang]
    background = json.loads(
        resources.files("app.services.ai").joinpath("data", "background.json").read_text("utf-8")
    )
    groups["chit_chat"] = background["sentences"]
    keys = sorted(groups)[:100]
    specs = []
    rows = []
    for key in keys:
        texts = sorted(groups[key])
        rng.shuffle(texts)
        specs.append(IntentSpec(key=key, examples=[IntentExample(text=t) for t in texts[:10]]))
        rows.extend(texts[10:])
    rng.shuffle(rows)
    started = time.perf_counter()
    model = LocalClassifier.train(specs)
    train_ms = (time.perf_counter() - started) * 1000
    queries = rows[:2000]
    timings: list[float] = []
    for text in queries:
        started = time.perf_counter()
        model.classify(text)
        timings.append((time.perf_counter() - started) * 1e6)
    timings.sort()
    return {
        "actions": len(specs),
        "examples_per_action": 10,
        "messages": len(queries),
        "train_ms": round(train_ms, 1),
        "p50_us": round(timings[len(timings) // 2], 1),
        "p99_us": round(timings[int(len(timings) * 0.99) - 1], 1),
        "model_bytes": len(model.to_bytes()),
    }


def main() -> None:
    print(
        json.dumps(
            {
                "engine": "local",
                "banking77": banking77(),
                "snips_es": snips_es(),
                "latency": latency_100_actions(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
