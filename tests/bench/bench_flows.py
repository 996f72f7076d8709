"""Benchmark of the flow language: µs per turn at 1/10/100 flows, 200-node compile, 1 MB invalid validation.

Run: .venv/bin/python tests/bench/bench_flows.py  (prints one JSON object; never asserts times)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "unit" / "flows")]

from memory_runtime import MemoryRuntime, make_turn  # noqa: E402

from flows.graph import compile_flow  # noqa: E402
from flows.interpreter import run_turn  # noqa: E402
from flows.validate import MAX_DOCUMENT_BYTES, decode_document, validate_document  # noqa: E402

TURNS = 3000


def keyword_flow(i: int, keyword: str) -> dict:
    actions = [
        {
            "type": "action.control_ai_response",
            "config": {
                "action": "custom_prompt",
                "custom_prompt": f"Assist {{{{ contact.first_name }}}} (flow {i})",
            },
        },
        {"type": "action.update_ai_context", "config": {"context_data": {"tier": "gold", "flow": i}}},
        {"type": "action.add_tag", "config": {"tag": f"seen-{i}"}},
        {"type": "action.set_conversation_status", "config": {"status": "open"}},
        {
            "type": "action.send_message",
            "config": {"text": "Hello {{ contact.first_name }}, how can we help?"},
        },
    ]
    nodes = [
        {
            "id": "t",
            "type": "when.message_received",
            "config": {"match": {"kind": "keywords", "keywords": [keyword, f"{keyword} now", f"k{i}x"]}},
        }
    ]
    nodes += [{"id": f"a{j}", **a} for j, a in enumerate(actions)]
    ids = [n["id"] for n in nodes]
    return {
        "name": f"flow-{i:03d}",
        "status": "active",
        "nodes": nodes,
        "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(ids)],
    }


def plans_for(count: int, *, all_match: bool) -> list:
    return [
        compile_flow(
            decode_document(keyword_flow(i, "help" if all_match or i == count - 1 else f"topic{i}")),
            flow_id=f"f{i}",
            version=1,
        )
        for i in range(count)
    ]


def us_per_turn(plans: list, text: str) -> float:
    turn = make_turn(text)

    async def go() -> float:
        runtime = MemoryRuntime()
        for _ in range(200):  # warm-up: templates compile on first use
            await run_turn(plans, turn, runtime)
        samples = []
        for _ in range(5):
            runtime = MemoryRuntime()
            started = time.perf_counter()
            for _ in range(TURNS // 5):
                await run_turn(plans, turn, runtime)
            samples.append((time.perf_counter() - started) / (TURNS // 5) * 1e6)
        return statistics.median(samples)

    return round(asyncio.run(go()), 1)


def big_flow(nodes: int) -> dict:
    kinds = [
        lambda j: {
            "type": "action.send_message",
            "config": {"text": f"Step {j} for {{{{ contact.first_name }}}}"},
        },
        lambda j: {
            "type": "action.update_ai_context",
            "config": {"context_data": {"step": j, "who": "{{ contact.id }}"}},
        },
        lambda j: {"type": "action.add_tag", "config": {"tag": f"t{j}"}},
        lambda j: {
            "type": "action.call_webhook",
            "config": {
                "url": "https://hooks.example.com/x",
                "payload_template": {"step": j, "q": "{{ vars.q }}"},
            },
        },
    ]
    nodes_ = [
        {
            "id": "t",
            "type": "when.message_received",
            "config": {"match": {"kind": "keywords", "keywords": ["go", "start now"]}},
        }
    ]
    nodes_ += [{"id": f"n{j}", **kinds[j % len(kinds)](j)} for j in range(nodes - 1)]
    edges, prev = [], "t"
    for n in nodes_[1:]:
        edge = {"from": prev, "to": n["id"]}
        if nodes_[[x["id"] for x in nodes_].index(prev)]["type"] == "action.call_webhook":
            edge["port"] = "success"
        edges.append(edge)
        prev = n["id"]
    return {"name": "Big", "status": "active", "nodes": nodes_, "edges": edges}


def compile_ms(nodes: int) -> float:
    doc = decode_document(big_flow(nodes))
    samples = []
    for _ in range(30):
        started = time.perf_counter()
        compile_flow(doc, flow_id="big", version=1)
        samples.append((time.perf_counter() - started) * 1e3)
    return round(statistics.median(samples), 3)


def invalid_megabyte() -> bytes:
    """~1 MB, 480 nodes, every fifth broken (template syntax, unknown field, bad regex, dangling edge...)."""
    filler = "lorem ipsum dolor sit amet " * 70
    nodes, edges = (
        [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "regex", "pattern": "(a+)+$"}},
            }
        ],
        [],
    )
    for j in range(480):
        text = filler + ("{{ broken" if j % 5 == 0 else "{{ contact.first_name }}")
        node = {"id": f"n{j}", "type": "action.send_message", "config": {"text": text[:4000]}}
        if j % 5 == 1:
            node["config"]["colour"] = "red"
        if j % 5 == 2:
            node["type"] = "action.unknown"
        nodes.append(node)
        edges.append({"from": "t" if j == 0 else f"n{j - 1}", "to": f"n{j}" if j % 5 != 3 else "ghost"})
    raw = json.dumps({"name": "Too broken", "nodes": nodes, "edges": edges}).encode()
    while len(raw) > MAX_DOCUMENT_BYTES:
        nodes.pop()
        edges.pop()
        raw = json.dumps({"name": "Too broken", "nodes": nodes, "edges": edges}).encode()
    return raw


def validate_ms(raw: bytes) -> tuple[float, int]:
    samples, count = [], 0
    for _ in range(5):
        started = time.perf_counter()
        doc, errors = validate_document(raw)
        samples.append((time.perf_counter() - started) * 1e3)
        assert doc is None
        count = len(errors)
    return round(statistics.median(samples), 2), count


def main() -> None:
    raw = invalid_megabyte()
    validation, errors = validate_ms(raw)
    result = {
        "bench": "flows",
        "python": platform.python_version(),
        "turn_us_one_flow_matches": {
            str(n): us_per_turn(plans_for(n, all_match=False), "I need help now please") for n in (1, 10, 100)
        },
        "turn_us_all_flows_match": {
            str(n): us_per_turn(plans_for(n, all_match=True), "I need help now please") for n in (1, 10)
        },
        "turn_us_no_flow_matches_ai_fallback_100": us_per_turn(
            plans_for(100, all_match=False), "nothing relevant here"
        ),
        "chain": "keyword trigger + 5 actions (custom prompt, context merge, add tag, status, templated message)",
        "compile_ms_200_nodes": compile_ms(200),
        "validate_ms_1mb_invalid": validation,
        "validate_input_bytes": len(raw),
        "validate_errors_found": errors,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
