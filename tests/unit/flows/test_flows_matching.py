"""Keyword normalisation (case, diacritics, Arabic letters) and the regex guard."""

from __future__ import annotations

import re

import pytest

from flows.matching import MAX_REGEX_INPUT_CHARS, KeywordSet, TextView, check_regex, normalise, search


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("help", "HELP me please"),
        ("espanol", "Hablo ESPAÑOL"),
        ("español", "hablo espanol"),
        ("café", "un CAFE por favor"),
        ("مدرسة", "هذه مدرسه كبيرة"),
        ("أريد", "اريد شراء هاتف"),
        ("إلى", "ذاهب الى البيت"),
        ("آيفون", "أريد ايفون"),
        ("على", "علي الطاولة"),
        ("كتاب", "كـــتاب جديد"),
        ("كتاب", "كِتَابٌ جديد"),
        ("customer service", "I need Customer   Service now"),
    ],
)
def test_keywords_match_normalised_text(keyword, text):
    keywords = KeywordSet([keyword], mode="any")
    view = TextView(text)
    assert keywords.matches(view.words, view.padded)


@pytest.mark.parametrize(
    ("keyword", "text"), [("help", "helpful tips"), ("art", "start"), ("order now", "now order")]
)
def test_keywords_match_whole_words_only(keyword, text):
    view = TextView(text)
    assert not KeywordSet([keyword], mode="any").matches(view.words, view.padded)


def test_mode_all_needs_every_keyword():
    keywords = KeywordSet(["refund", "order"], mode="all")
    both, one = TextView("Refund my ORDER"), TextView("refund please")
    assert sorted(keywords.matches(both.words, both.padded)) == ["order", "refund"]
    assert keywords.matches(one.words, one.padded) == []


def test_normalise_arabic_letters():
    assert normalise("أإآٱ ة ى ـ") == "اااا ه ي "


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a*)*", "(?:\\w+\\s?)+$", "((ab)*c)+", "(x+x+)+y"])
def test_nested_quantifiers_are_rejected(pattern):
    problem = check_regex(pattern)
    assert problem is not None and problem[0] == "regex_unsafe"


@pytest.mark.parametrize(
    "pattern", [r"order\s*#?(?P<order_id>\d+)", r"^(hi|hello)\b", r"[a-z]{2,5}", r"(ab)+"]
)
def test_ordinary_patterns_are_accepted(pattern):
    assert check_regex(pattern) is None


def test_regex_length_cap():
    assert check_regex("a" * 500) is None
    assert check_regex("a" * 501)[0] == "regex_too_long"


def test_regex_sees_only_a_bounded_input():
    text = "x" * MAX_REGEX_INPUT_CHARS + "needle"
    assert search(re.compile("needle"), text) is None
    assert search(re.compile("needle"), "a needle") is not None
