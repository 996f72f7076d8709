"""The compiled plan of one flow version: adjacency, trigger index, keyword sets, regexes, template cache."""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from flows.matching import KeywordSet
from flows.nodes.registry import NODE_TYPES
from flows.ports import IntentCandidate
from flows.schema import (
    CallWebhookConfig,
    FlowDocument,
    MatchAny,
    MatchIntent,
    MatchKeywords,
    MatchRegex,
    MessageReceivedConfig,
    Node,
)
from flows.templates import TemplateCache, is_templated, template_strings

__all__ = ["CompiledFlow", "IntentCandidate", "TriggerPlan", "compile_flow", "intent_candidates"]

MESSAGE_TRIGGER = "when.message_received"


class TriggerPlan(msgspec.Struct, frozen=True, kw_only=True):
    """One trigger node, pre-processed for cheap matching on every turn."""

    node_id: str
    type: str
    kind: str  # any | keywords | regex | intent | event
    keywords: KeywordSet | None = None
    regex: re.Pattern[str] | None = None
    tag: str | None = None  # case-folded, for tag_added / tag_removed


class CompiledFlow(msgspec.Struct, frozen=True, kw_only=True):
    """Built once per (flow_id, version); read-only afterwards except for the lazy template cache."""

    flow_id: str
    version: int
    name: str
    priority: int
    doc: FlowDocument
    nodes: dict[str, Node]
    adjacency: dict[str, dict[str | None, list[str]]]
    triggers: dict[str, list[TriggerPlan]]  # by trigger node type
    message_triggers: list[TriggerPlan]  # any / keywords / regex, in document order
    # Prefilter for the hot path: a plan whose keyword words miss the text is skipped in O(1).
    trigger_words: frozenset[str]
    scan_always: bool  # an any/regex trigger: cannot be prefiltered by words
    keyword_sets: dict[str, KeywordSet]
    regexes: dict[str, re.Pattern[str]]
    intents: list[IntentCandidate]
    intent_webhooks: dict[str, str]  # intent trigger id -> first call_webhook node after it
    inputs: dict[str, dict[str, Any]]  # node config as JSON, for the trace
    templates: TemplateCache  # compiled on first render, then kept for this version
    sort_key: tuple[int, str, str]

    def next_nodes(self, node_id: str, port: str | None) -> list[str]:
        return self.adjacency.get(node_id, {}).get(port, [])


def _first_webhook(
    start: str, nodes: dict[str, Node], adjacency: dict[str, dict[str | None, list[str]]]
) -> str | None:
    seen = {start}
    queue = [start]
    while queue:
        current = queue.pop(0)
        for targets in adjacency.get(current, {}).values():
            for target in targets:
                if target in seen:
                    continue
                seen.add(target)
                if nodes[target].type == "action.call_webhook":
                    return target
                queue.append(target)
    return None


def compile_flow(doc: FlowDocument, *, flow_id: str, version: int) -> CompiledFlow:
    """Normalise a validated document into an executable plan (no validation is repeated here)."""
    nodes = {n.id: n for n in doc.nodes}
    adjacency: dict[str, dict[str | None, list[str]]] = {n.id: {} for n in doc.nodes}
    for edge in doc.edges:
        adjacency[edge.from_].setdefault(edge.port, []).append(edge.to)

    triggers: dict[str, list[TriggerPlan]] = {}
    message_triggers: list[TriggerPlan] = []
    keyword_sets: dict[str, KeywordSet] = {}
    regexes: dict[str, re.Pattern[str]] = {}
    intent_nodes: list[tuple[Node, MatchIntent]] = []
    sources: set[str] = set()
    inputs: dict[str, dict[str, Any]] = {}
    for node in doc.nodes:
        spec = NODE_TYPES.get(node.type)
        if spec is None:
            raise ValueError(f"node {node.id!r} has unknown type {node.type!r}; validate the document first")
        inputs[node.id] = msgspec.to_builtins(node.config)
        sources.update(s for s in template_strings(inputs[node.id]) if is_templated(s))
        if spec.group != "trigger":
            continue
        plan: TriggerPlan
        if node.type == MESSAGE_TRIGGER:
            assert isinstance(node.config, MessageReceivedConfig)
            match = node.config.match
            if isinstance(match, MatchKeywords):
                keyword_sets[node.id] = KeywordSet(match.keywords, mode=match.mode)
                plan = TriggerPlan(
                    node_id=node.id, type=node.type, kind="keywords", keywords=keyword_sets[node.id]
                )
            elif isinstance(match, MatchRegex):
                regexes[node.id] = re.compile(match.pattern)
                plan = TriggerPlan(node_id=node.id, type=node.type, kind="regex", regex=regexes[node.id])
            elif isinstance(match, MatchIntent):
                intent_nodes.append((node, match))
                plan = TriggerPlan(node_id=node.id, type=node.type, kind="intent")
            else:
                assert isinstance(match, MatchAny)
                plan = TriggerPlan(node_id=node.id, type=node.type, kind="any")
            if plan.kind != "intent":
                message_triggers.append(plan)
        else:
            tag = getattr(node.config, "tag", None)
            plan = TriggerPlan(
                node_id=node.id, type=node.type, kind="event", tag=tag.casefold() if tag else None
            )
        triggers.setdefault(node.type, []).append(plan)

    trigger_words: set[str] = set()
    for ks in keyword_sets.values():
        trigger_words |= ks.single
        trigger_words.update(p.split()[0] for p in ks.phrases)
    intents: list[IntentCandidate] = []
    intent_webhooks: dict[str, str] = {}
    for node, match in intent_nodes:
        hook_id = _first_webhook(node.id, nodes, adjacency)
        hook = nodes[hook_id].config if hook_id else None
        if hook_id is not None:
            intent_webhooks[node.id] = hook_id
        intents.append(
            IntentCandidate(
                flow_id=flow_id,
                node_id=node.id,
                display_name=match.display_name,
                description=match.description,
                training_examples=list(match.training_examples),
                confidence_threshold=match.confidence_threshold,
                priority=doc.priority,
                variables=list(match.variables),
                requires_confirmation=isinstance(hook, CallWebhookConfig) and hook.requires_confirmation,
            )
        )

    return CompiledFlow(
        flow_id=flow_id,
        version=version,
        name=doc.name,
        priority=doc.priority,
        doc=doc,
        nodes=nodes,
        adjacency=adjacency,
        triggers=triggers,
        message_triggers=message_triggers,
        trigger_words=frozenset(trigger_words),
        scan_always=any(t.kind != "keywords" for t in message_triggers),
        keyword_sets=keyword_sets,
        regexes=regexes,
        intents=intents,
        intent_webhooks=intent_webhooks,
        inputs=inputs,
        templates=TemplateCache(max_entries=max(64, 2 * len(sources))),
        sort_key=(-doc.priority, doc.name, flow_id),
    )


_SORT_KEY = operator.attrgetter("sort_key")


def order_plans(plans: Iterable[CompiledFlow]) -> list[CompiledFlow]:
    """Priority first (higher runs first), then name, then id for a stable order."""
    return sorted(plans, key=_SORT_KEY)


def intent_candidates(plans: Sequence[CompiledFlow]) -> list[IntentCandidate]:
    """Every intent trigger of the plans, highest priority first."""
    return [c for p in order_plans(plans) for c in p.intents]
