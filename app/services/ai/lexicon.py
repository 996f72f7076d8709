"""Confirmation replies without an LLM: approve, reject or unclear from a multilingual lexicon."""

from __future__ import annotations

import functools
import json
import re
from enum import Enum
from importlib import resources

from app.services.ai.classifier import normalize_text


class ReplyDecision(str, Enum):
    APPROVE = "approve"
    REJECT = "reject"
    UNCLEAR = "unclear"


_CLAUSE_RE = re.compile(r"[,.;:!?\n،؛]+|\s(?:but|pero|mais|mas|لكن|بس)\s")
_TOKEN_RE = re.compile(r"[\w']+")
_NEGATION_WINDOW = 2
"""A negator this many words before an approving phrase turns it around ("not ok", "don't do it")."""


class _Lexicon:
    def __init__(self) -> None:
        data = json.loads(
            resources.files(__package__).joinpath("data", "confirmation.json").read_text(encoding="utf-8")
        )
        self.phrases: dict[tuple[str, ...], ReplyDecision] = {}
        # Unclear first so "i don't know" is never read as "don't".
        for kind, decision in (
            ("approve", ReplyDecision.APPROVE),
            ("reject", ReplyDecision.REJECT),
            ("unclear", ReplyDecision.UNCLEAR),
        ):
            for phrase in data[kind]:
                tokens = tuple(_TOKEN_RE.findall(normalize_text(phrase)))
                if tokens:
                    self.phrases[tokens] = decision
        self.max_len = max(len(p) for p in self.phrases)
        self.negators = frozenset(normalize_text(w) for w in data["negators"])
        self.approve_emoji = tuple(data["approve_emoji"])
        self.reject_emoji = tuple(data["reject_emoji"])


@functools.lru_cache(maxsize=1)
def _lexicon() -> _Lexicon:
    return _Lexicon()


def _clause_decision(tokens: list[str], lex: _Lexicon) -> ReplyDecision | None:
    """The last decisive phrase of a clause, longest phrases first, approvals flipped by a negator."""
    decision: ReplyDecision | None = None
    i = 0
    while i < len(tokens):
        for size in range(min(lex.max_len, len(tokens) - i), 0, -1):
            found = lex.phrases.get(tuple(tokens[i : i + size]))
            if found is None:
                continue
            if found is ReplyDecision.APPROVE and any(
                t in lex.negators for t in tokens[max(0, i - _NEGATION_WINDOW) : i]
            ):
                found = ReplyDecision.REJECT
            decision = found
            i += size
            break
        else:
            i += 1
    return decision


def classify_reply(text: str) -> str:
    """ "approve" | "reject" | "unclear": the last clause that decides wins ("no, go ahead" approves)."""
    lex = _lexicon()
    decision: ReplyDecision | None = None
    for clause in _CLAUSE_RE.split(normalize_text(text)):
        found = _clause_decision(_TOKEN_RE.findall(clause), lex)
        if found is not None:
            decision = found
    if decision is None:
        ups = sum(text.count(e) for e in lex.approve_emoji)
        downs = sum(text.count(e) for e in lex.reject_emoji)
        if ups != downs:
            decision = ReplyDecision.APPROVE if ups > downs else ReplyDecision.REJECT
    return (decision or ReplyDecision.UNCLEAR).value
