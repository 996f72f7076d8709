"""Which language a customer writes in (en, es, ar, fr, pt), and the one a custom prompt asks for."""

from __future__ import annotations

import functools
import json
import re
from importlib import resources

DEFAULT = "en"
LANGUAGES = ("en", "es", "ar", "fr", "pt")
_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)
_ARABIC_RE = re.compile(r"[\u0600-\u06ff]")
_LATIN_RE = re.compile(r"[A-Za-zÀ-ÿ]")
# Letters that only one of the Latin-script languages uses.
_MARKS = {"es": "ñ¿¡", "pt": "ãõ", "fr": "èêëçœ"}


@functools.lru_cache(maxsize=1)
def _data() -> dict:
    raw = resources.files(__package__).joinpath("data", "languages.json").read_text(encoding="utf-8")
    return json.loads(raw)


@functools.lru_cache(maxsize=1)
def _words() -> dict[str, frozenset[str]]:
    return {lang: frozenset(words) for lang, words in _data()["words"].items()}


@functools.lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    return {name.casefold(): lang for lang, names in _data()["names"].items() for name in names}


def detect(text: str, *, default: str = DEFAULT) -> str:
    """The message's language: Arabic by its script, the Latin ones by their function words and letters."""
    arabic = len(_ARABIC_RE.findall(text))
    latin = len(_LATIN_RE.findall(text))
    if arabic and arabic >= latin:
        return "ar"
    lowered = text.casefold()
    tokens = _WORD_RE.findall(lowered)
    if not tokens:
        return default
    scores = {lang: sum(1.0 for t in tokens if t in words) for lang, words in _words().items()}
    for lang, marks in _MARKS.items():
        scores[lang] += 1.5 * sum(lowered.count(m) for m in marks)
    best = max(scores, key=lambda lang: (scores[lang], lang == default))
    return best if scores[best] > 0 else default


def requested(prompt: str | None) -> str | None:
    """The language a custom prompt names ("Always answer in Spanish" -> "es"), if it names one."""
    if not prompt:
        return None
    names = _names()
    for word in _WORD_RE.findall(prompt.casefold()):
        if word in names:
            return names[word]
    return None


def fallback_text(intent: str, language: str) -> str | None:
    """The default fallback reply of a core-intent personality in `language` (None if not shipped)."""
    return _data()["fallbacks"].get(intent, {}).get(language)
