"""Text matching for message triggers: normalised whole-word keywords, and regexes on RE2 (linear time).

Regexes run on RE2 (google-re2), not Python's `re`: Python's engine backtracks, and one
26-character message against `^(a|a)*$` held a worker for seconds. RE2 matches in time
linear in the text whatever the pattern; what it cannot run in linear time (lookarounds,
backreferences) it refuses to compile, and `check_regex` says so when the flow is saved.
RE2 is a pure computation library (no I/O), so flows/ stays pure with it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Protocol

import re2

MAX_REGEX_CHARS = 500
# RE2 is linear, so this only bounds a match's cost: a WhatsApp text is at most 4096 characters.
MAX_REGEX_INPUT_CHARS = 4096

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


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to the user, not to stderr

# RE2's words for what it cannot run, in plain words for the person writing the pattern.
_UNSUPPORTED: tuple[tuple[str, str], ...] = (
    ("invalid perl operator: (?=", "lookahead (?=...)"),
    ("invalid perl operator: (?!", "negative lookahead (?!...)"),
    ("invalid perl operator: (?<=", "lookbehind (?<=...)"),
    ("invalid perl operator: (?<!", "negative lookbehind (?<!...)"),
    ("invalid perl operator: (?>", "atomic groups (?>...)"),
    ("bad repetition operator: *+", "possessive repeats like *+ and ++"),
    ("bad repetition operator: ++", "possessive repeats like *+ and ++"),
    ("bad repetition operator: ?+", "possessive repeats like *+ and ++"),
)
_BACKREFERENCE = re.compile(r"invalid escape sequence: \\[1-9]")
_ANY_BYTE = re.compile(r"(?<!\\)(?:\\\\)*\\C")


class RegexRefused(ValueError):
    """RE2 cannot run the pattern; `code` is the validation code, the message a sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RegexMatch(Protocol):
    def group(self, index: int = 0) -> str: ...

    def groupdict(self) -> dict[str, str | None]: ...


class CompiledRegex(Protocol):
    """A compiled RE2 pattern (the part of its interface the flows use)."""

    def search(self, text: str) -> RegexMatch | None: ...


def _unsupported(what: str) -> RegexRefused:
    return RegexRefused(
        "regex_unsupported",
        f"The pattern uses {what}, which the regex engine cannot run: patterns run on RE2, which "
        "matches in time linear in the message and so has no lookarounds or backreferences. "
        "Rewrite that part of the pattern.",
    )


def _refusal(error: str) -> RegexRefused:
    if _BACKREFERENCE.search(error):
        return _unsupported("a backreference like \\1")
    for needle, what in _UNSUPPORTED:
        if needle in error:
            return _unsupported(what)
    if "invalid repetition size" in error:
        return RegexRefused(
            "regex_unsupported",
            "A repeat count {n,m} must be 1000 or less (and n no more than m); use a smaller count.",
        )
    if "pattern too large" in error:
        return RegexRefused(
            "regex_unsupported",
            "The pattern is too large once its repeats are expanded; use smaller repeat counts.",
        )
    return RegexRefused("regex_invalid", f"The pattern is not a valid regular expression ({error}); fix it.")


def compile_regex(pattern: str) -> CompiledRegex:
    """Compile for RE2, which matches in time linear in the text (no backtracking).

    Raises RegexRefused when RE2 cannot run the pattern; validation (`check_regex`)
    refuses such patterns when the flow is saved.
    """
    if _ANY_BYTE.search(pattern):
        raise _unsupported("\\C (any single byte)")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else exc
        raise _refusal(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)) from None


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
        compile_regex(pattern)
    except RegexRefused as exc:
        return (exc.code, exc.message)
    return None


def search(regex: CompiledRegex, text: str) -> RegexMatch | None:
    """Search the first MAX_REGEX_INPUT_CHARS characters of the text."""
    return regex.search(text[:MAX_REGEX_INPUT_CHARS])
