"""Text matching for message triggers: normalised whole-word keywords and guarded regexes."""

from __future__ import annotations

import re
import unicodedata

try:  # Python 3.11+ ships the parser as re._parser; sre_parse is its deprecated alias.
    import re._parser as _sre_parse  # type: ignore[import-not-found]  # typeshed has no stub for it
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse

MAX_REGEX_CHARS = 500
# Python's re has no timeout, so a match only ever sees this much text.
MAX_REGEX_INPUT_CHARS = 2000

_ARABIC = str.maketrans(
    {
        "\u0622": "\u0627",  # alef with madda
        "\u0623": "\u0627",  # alef with hamza above
        "\u0625": "\u0627",  # alef with hamza below
        "\u0671": "\u0627",  # alef wasla
        "\u0629": "\u0647",  # ta marbuta -> ha
        "\u0649": "\u064a",  # alef maqsura -> ya
        "\u0640": None,  # tatweel
    }
)
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Case-fold, strip diacritics and harakat, and unify Arabic letter variants."""
    if text.isascii():
        return text.casefold()
    text = text.translate(_ARABIC)
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.translate(_ARABIC).casefold()


def words(text: str) -> list[str]:
    """Normalised words of a text, in order."""
    return _WORD.findall(normalise(text))


class KeywordSet:
    """Pre-normalised keywords: single words as a set, phrases as padded word sequences."""

    __slots__ = ("count", "mode", "phrases", "single")

    def __init__(self, keywords: list[str], *, mode: str) -> None:
        single: set[str] = set()
        phrases: set[str] = set()
        for keyword in keywords:
            parts = words(keyword)
            if len(parts) == 1:
                single.add(parts[0])
            elif parts:
                phrases.add(" " + " ".join(parts) + " ")
        self.single = frozenset(single)
        self.phrases = tuple(sorted(phrases))
        self.mode = mode
        self.count = len(self.single) + len(self.phrases)

    def matches(self, text_words: frozenset[str], padded: str) -> list[str]:
        """The keywords found (empty when the trigger does not match)."""
        if self.mode == "any" and self.single.isdisjoint(text_words) and not self.phrases:
            return []
        found = [w for w in self.single if w in text_words] if self.single else []
        if self.phrases:
            found += [p.strip() for p in self.phrases if p in padded]
        if self.mode == "all":
            return found if len(found) == self.count and self.count else []
        return found


class TextView:
    """One message text, normalised once per turn for every keyword trigger."""

    __slots__ = ("padded", "raw", "words")

    def __init__(self, raw: str) -> None:
        seq = words(raw)
        self.raw = raw
        self.words = frozenset(seq)
        self.padded = " " + " ".join(seq) + " "


def _has_nested_quantifier(parsed: object, *, inside_repeat: bool) -> bool:
    for op, arg in parsed:  # type: ignore[attr-defined]
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _low, high, sub = arg
            repeats = high is _sre_parse.MAXREPEAT or high > 1
            if repeats and inside_repeat:
                return True
            if _has_nested_quantifier(sub, inside_repeat=inside_repeat or repeats):
                return True
        elif name == "SUBPATTERN":
            if _has_nested_quantifier(arg[-1], inside_repeat=inside_repeat):
                return True
        elif name == "BRANCH":
            if any(_has_nested_quantifier(b, inside_repeat=inside_repeat) for b in arg[1]):
                return True
        elif name in ("ASSERT", "ASSERT_NOT"):
            if _has_nested_quantifier(arg[1], inside_repeat=inside_repeat):
                return True
        elif name == "ATOMIC_GROUP" and _has_nested_quantifier(arg, inside_repeat=inside_repeat):
            return True
    return False


def check_regex(pattern: str) -> tuple[str, str] | None:
    """(code, sentence) when the pattern may not be used, else None."""
    if len(pattern) > MAX_REGEX_CHARS:
        return (
            "regex_too_long",
            f"The pattern has {len(pattern)} characters; keep it to {MAX_REGEX_CHARS} or fewer.",
        )
    if not pattern:
        return ("regex_invalid", "The pattern is empty; write a regular expression.")
    try:
        parsed = _sre_parse.parse(pattern)
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return ("regex_invalid", f"The pattern is not a valid regular expression ({exc}); fix it.")
    if _has_nested_quantifier(parsed, inside_repeat=False):
        return (
            "regex_unsafe",
            "The pattern repeats a group that itself repeats (like (a+)+), which can stall matching; "
            "remove the nested quantifier.",
        )
    return None


def search(regex: re.Pattern[str], text: str) -> re.Match[str] | None:
    """Search with the input bounded, since Python's re cannot be interrupted."""
    return regex.search(text[:MAX_REGEX_INPUT_CHARS])
