"""Trigger overlap: message triggers of two flows that fire on the same message ("'order' also fires Hand-off")."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from flows.matching import MAX_REGEX_CHARS, check_regex, compile_regex, search, words

try:  # Python 3.11+ ships the parser as re._parser; sre_parse is its deprecated alias.
    import re._parser as _sre_parse  # type: ignore[import-not-found]  # typeshed has no stub for it
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse

MAX_SAMPLES = 16  # texts made up per regex to try the other triggers on


class MessageTrigger(msgspec.Struct, frozen=True, kw_only=True):
    """A keyword / regex / any trigger of one flow, as the editor saved it (a draft may be invalid)."""

    flow_id: str
    flow_name: str
    node_id: str
    kind: str  # any | keywords | regex
    keywords: tuple[str, ...] = ()  # normalised words or phrases
    mode: str = "any"  # keywords: any of them, or all of them
    pattern: str = ""


class Overlap(msgspec.Struct, frozen=True, kw_only=True):
    """`node_id` of `flow_id` and `other_node_id` of `other_flow_id` both fire on `example`."""

    flow_id: str
    node_id: str
    other_flow_id: str
    other_flow_name: str
    other_node_id: str
    example: str  # a keyword or text both fire on ("" when one of them fires on any message)
    message: str


def message_triggers(flow_id: str, flow_name: str, document: dict[str, Any]) -> list[MessageTrigger]:
    """The any / keywords / regex triggers of a saved document (intent triggers are the classifier's)."""
    found = []
    for node in document.get("nodes") or []:
        if not isinstance(node, dict) or node.get("type") != "when.message_received":
            continue
        config = node.get("config")
        match = config.get("match") if isinstance(config, dict) else None
        if not isinstance(match, dict) or not isinstance(node.get("id"), str):
            continue
        kind = match.get("kind")
        base = {"flow_id": flow_id, "flow_name": flow_name, "node_id": node["id"]}
        if kind == "any":
            found.append(MessageTrigger(kind="any", **base))
        elif kind == "keywords" and isinstance(match.get("keywords"), list):
            phrases = tuple(" ".join(words(str(k))) for k in match["keywords"] if words(str(k)))
            mode = "all" if match.get("mode") == "all" else "any"
            if phrases:
                found.append(MessageTrigger(kind="keywords", keywords=phrases, mode=mode, **base))
        elif (
            kind == "regex"
            and isinstance(match.get("pattern"), str)
            and check_regex(match["pattern"]) is None
        ):
            found.append(MessageTrigger(kind="regex", pattern=match["pattern"], **base))
    return found


def _samples(pattern: str) -> list[str]:
    """A few texts the pattern matches, made from its parse tree (literals, first of each class...)."""
    if len(pattern) > MAX_REGEX_CHARS:
        return []
    try:
        parsed = _sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return []
    return [s for s in _expand(list(parsed)) if s.strip()][:MAX_SAMPLES]


_CATEGORY = {"CATEGORY_DIGIT": "0", "CATEGORY_WORD": "a", "CATEGORY_SPACE": " "}


def _expand(items: list[tuple[Any, Any]]) -> list[str]:
    texts = [""]
    for op, arg in items:
        name = str(op)
        options: list[str]
        if name == "LITERAL":
            options = [chr(arg)]
        elif name == "ANY":
            options = ["a"]
        elif name == "NOT_LITERAL":
            options = ["b" if arg == ord("a") else "a"]
        elif name == "IN":
            options = [_first_in(arg)]
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _, sub = arg
            inner = _expand(list(sub)) or [""]
            options = [t * max(low, 1) for t in inner[:4]]
            if low == 0:
                options.append("")
        elif name == "SUBPATTERN":
            options = _expand(list(arg[-1]))
        elif name == "ATOMIC_GROUP":
            options = _expand(list(arg))
        elif name == "BRANCH":
            options = [t for branch in arg[1] for t in _expand(list(branch))]
        elif name in ("AT", "ASSERT", "ASSERT_NOT", "GROUPREF"):
            options = [""]
        else:
            options = [""]
        texts = [t + o for t in texts for o in (options or [""])][: MAX_SAMPLES * 4]
    return texts


def _first_in(arg: list[tuple[Any, Any]]) -> str:
    if arg and str(arg[0][0]) == "NEGATE":
        return "a" if not any(str(op) == "LITERAL" and chr(v) == "a" for op, v in arg[1:]) else "b"
    for op, value in arg:
        name = str(op)
        if name == "LITERAL":
            return chr(value)
        if name == "RANGE":
            return chr(value[0])
        if name == "CATEGORY":
            return _CATEGORY.get(str(value), "a")
    return "a"


def _fires(trigger: MessageTrigger, text: str) -> bool:
    if trigger.kind == "any":
        return True
    if trigger.kind == "keywords":
        padded = " " + " ".join(words(text)) + " "
        found = [f" {k} " in padded for k in trigger.keywords]
        return all(found) if trigger.mode == "all" else any(found)
    return search(compile_regex(trigger.pattern), text) is not None


def _examples(trigger: MessageTrigger) -> list[str]:
    if trigger.kind == "keywords":
        return [" ".join(trigger.keywords)] if trigger.mode == "all" else list(trigger.keywords)
    if trigger.kind == "regex":
        return _samples(trigger.pattern)
    return []


def _shared(a: MessageTrigger, b: MessageTrigger) -> str | None:
    """A text both fire on ("" when one fires on any message), or None."""
    if a.kind == "any" or b.kind == "any":
        return ""
    for text in _examples(a):
        if _fires(b, text):
            return text
    for text in _examples(b):
        if _fires(a, text):
            return text
    return None


def find_overlaps(mine: Iterable[MessageTrigger], others: Iterable[MessageTrigger]) -> list[Overlap]:
    """Every pair (one of `mine`, one of `others` from another flow) that fires on the same message."""
    others = list(others)
    found = []
    for a in mine:
        for b in others:
            if a.flow_id == b.flow_id:
                continue
            example = _shared(a, b)
            if example is None:
                continue
            what = f"{example!r}" if example else ("Any message" if a.kind == "any" else "Every message")
            found.append(
                Overlap(
                    flow_id=a.flow_id,
                    node_id=a.node_id,
                    other_flow_id=b.flow_id,
                    other_flow_name=b.flow_name,
                    other_node_id=b.node_id,
                    example=example,
                    message=f"{what} also fires {b.flow_name}",
                )
            )
    return found
