"""The compiled plan of one flow version: adjacency, trigger index, keyword sets, regexes, external actions."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from flows.matching import CompiledRegex, KeywordSet, compile_regex
from flows.nodes.registry import NODE_TYPES
from flows.runtime import IntentCandidate
from flows.schema import FlowDocument, MatchAny, MatchIntent, MatchKeywords, MatchRegex, Node, NodeGroup
from flows.templates import TemplateCache, is_templated, template_strings

__all__ = [
    "CompiledFlow",
    "ExternalAction",
    "IntentCandidate",
    "TriggerPlan",
    "compile_flow",
    "external_actions",
    "intent_candidates",
]


class ExternalAction(msgspec.Struct, frozen=True, kw_only=True):
    """An intent trigger and the action node it runs (the first external-action node reachable after it)."""

    trigger_id: str
    action_id: str | None


class TriggerPlan(msgspec.Struct, frozen=True, kw_only=True):
    """One trigger node, pre-processed for cheap matching on every turn."""

    node_id: str
    type: str
    kind: str  # any | keywords | regex | intent | event
    keywords: KeywordSet | None = None
    regex: CompiledRegex | None = None
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
    triggers: dict[str, list[TriggerPlan]]  # event triggers by event kind, message triggers by node type
    message_triggers: list[TriggerPlan]  # any / keywords / regex, in document order
    # Prefilter for the hot path: a plan whose keyword words miss the text is skipped in O(1).
    trigger_words: frozenset[str]
    scan_always: bool  # an any/regex trigger: cannot be prefiltered by words
    keyword_sets: dict[str, KeywordSet]
    regexes: dict[str, CompiledRegex]
    intents: list[IntentCandidate]
    intent_actions: dict[str, str]  # intent trigger id -> the external-action node it runs
    inputs: dict[str, dict[str, Any]]  # node config as JSON, for the trace
    template_sources: frozenset[str]
    templates: TemplateCache  # compiled on first render, then kept for this version
    sort_key: tuple[int, str, str]

    def next_nodes(self, node_id: str, port: str | None) -> list[str]:
        return self.adjacency.get(node_id, {}).get(port, [])

    def external_actions(self) -> list[ExternalAction]:
        """Every intent trigger of the flow and the node it runs, as the interpreter runs it."""
        return [
            ExternalAction(trigger_id=c.node_id, action_id=self.intent_actions.get(c.node_id))
            for c in self.intents
        ]

    def intent_action(self, trigger_id: str) -> Node | None:
        found = self.intent_actions.get(trigger_id)
        return self.nodes[found] if found else None


def _first_external_action(
    start: str, types: dict[str, str], adjacency: dict[str, dict[str | None, list[str]]]
) -> str | None:
    """Breadth first from `start`: the nearest node whose type is an external action."""
    seen = {start}
    queue = [start]
    while queue:
        current = queue.pop(0)
        for targets in adjacency.get(current, {}).values():
            for target in targets:
                if target in seen or target not in types:
                    continue
                seen.add(target)
                spec = NODE_TYPES.get(types[target])
                if spec is not None and spec.external_action:
                    return target
                queue.append(target)
    return None


def external_actions(document: dict[str, Any]) -> list[ExternalAction]:
    """CompiledFlow.external_actions() of a saved document, which may be an invalid draft."""
    nodes = [n for n in document.get("nodes") or [] if isinstance(n, dict) and isinstance(n.get("id"), str)]
    types = {n["id"]: str(n.get("type")) for n in nodes}
    adjacency: dict[str, dict[str | None, list[str]]] = {}
    for edge in document.get("edges") or []:
        if isinstance(edge, dict) and edge.get("from") in types:
            adjacency.setdefault(edge["from"], {}).setdefault(edge.get("port"), []).append(
                str(edge.get("to"))
            )
    found = []
    for node in nodes:
        config = node.get("config")
        match = config.get("match") if isinstance(config, dict) else None
        if isinstance(match, dict) and match.get("kind") == "intent":
            action = _first_external_action(node["id"], types, adjacency)
            found.append(ExternalAction(trigger_id=node["id"], action_id=action))
    return found


def compile_flow(doc: FlowDocument, *, flow_id: str, version: int) -> CompiledFlow:
    """Normalise a validated document into an executable plan (no validation is repeated here)."""
    nodes = {n.id: n for n in doc.nodes}
    adjacency: dict[str, dict[str | None, list[str]]] = {n.id: {} for n in doc.nodes}
    for edge in doc.edges:
        adjacency[edge.from_].setdefault(edge.port, []).append(edge.to)

    triggers: dict[str, list[TriggerPlan]] = {}
    message_triggers: list[TriggerPlan] = []
    keyword_sets: dict[str, KeywordSet] = {}
    regexes: dict[str, CompiledRegex] = {}
    intent_nodes: list[tuple[Node, MatchIntent]] = []
    sources: set[str] = set()
    inputs: dict[str, dict[str, Any]] = {}
    for node in doc.nodes:
        spec = NODE_TYPES.get(node.type)
        if spec is None:
            raise ValueError(f"node {node.id!r} has unknown type {node.type!r}; validate the document first")
        inputs[node.id] = msgspec.to_builtins(node.config)
        sources.update(s for s in template_strings(inputs[node.id]) if is_templated(s))
        if spec.group != NodeGroup.TRIGGER:
            continue
        plan: TriggerPlan
        match = getattr(node.config, "match", None)
        if spec.event is None:
            if isinstance(match, MatchKeywords):
                keyword_sets[node.id] = KeywordSet(match.keywords, mode=match.mode)
                plan = TriggerPlan(
                    node_id=node.id, type=node.type, kind="keywords", keywords=keyword_sets[node.id]
                )
            elif isinstance(match, MatchRegex):
                regexes[node.id] = compile_regex(match.pattern)
                plan = TriggerPlan(node_id=node.id, type=node.type, kind="regex", regex=regexes[node.id])
            elif isinstance(match, MatchIntent):
                intent_nodes.append((node, match))
                plan = TriggerPlan(node_id=node.id, type=node.type, kind="intent")
            else:
                assert isinstance(match, MatchAny), f"{node.type} is a message trigger without a match"
                plan = TriggerPlan(node_id=node.id, type=node.type, kind="any")
            if plan.kind != "intent":
                message_triggers.append(plan)
        else:
            tag = getattr(node.config, "tag", None)
            plan = TriggerPlan(
                node_id=node.id, type=node.type, kind="event", tag=tag.casefold() if tag else None
            )
        triggers.setdefault(spec.event.value if spec.event else node.type, []).append(plan)

    trigger_words: set[str] = set()
    for ks in keyword_sets.values():
        trigger_words |= ks.single
        trigger_words.update(p.split()[0] for p in ks.phrases)
    intents: list[IntentCandidate] = []
    intent_actions: dict[str, str] = {}
    types = {n.id: n.type for n in doc.nodes}
    for node, match in intent_nodes:
        action_id = _first_external_action(node.id, types, adjacency)
        if action_id is not None:
            intent_actions[node.id] = action_id
        intents.append(
            IntentCandidate(
                flow_id=flow_id,
                node_id=node.id,
                display_name=match.display_name,
                description=match.description,
                training_examples=list(match.training_examples),
                negative_examples=list(match.negative_examples),
                confidence_threshold=match.confidence_threshold,
                priority=doc.priority,
                variables=list(match.variables),
                requires_confirmation=action_id is not None
                and bool(getattr(nodes[action_id].config, "requires_confirmation", False)),
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
        intent_actions=intent_actions,
        inputs=inputs,
        template_sources=frozenset(sources),
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
