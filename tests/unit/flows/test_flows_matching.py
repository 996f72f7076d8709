"""Keyword normalisation (case, diacritics, Arabic letters) and the regex guard."""

from __future__ import annotations

import pytest

from flows.matching import (
    MAX_REGEX_INPUT_CHARS,
    KeywordSet,
    TextView,
    check_regex,
    compile_regex,
    normalise,
    search,
)


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


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        # Each of these took Python's backtracking engine seconds to days on the text shown
        # (issue 14: one 26-character message stalled a shared worker); RE2 is linear.
        ("^(a|a)*$", "a" * 40 + "b", False),
        (r"^(\d|\d\d)+$", "1" * 40 + "x", False),
        ("^(a?){25}a{25}$", "a" * 25, True),
        (r"(.|\s)*cancel", "x" * 4000, False),
        ("(a+)+$", "a" * 40 + "!", False),
        (r"(?:\w+\s?)+$", "word " * 800 + "!", False),
    ],
)
def test_patterns_that_backtrack_run_in_linear_time(pattern, text, found):
    assert check_regex(pattern) is None
    assert (search(compile_regex(pattern), text) is not None) is found


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        ("(?=order)", "lookahead"),
        ("(?<!no )refund", "negative lookbehind"),
        (r"(a)\1", "backreference"),
        ("(?>ab)", "atomic groups"),
        ("a*+", "possessive"),
        ("a{1001}", "1000 or less"),
        (r"\C", "any single byte"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_with_the_reason(pattern, what):
    code, sentence = check_regex(pattern)
    assert code == "regex_unsupported"
    assert what in sentence


def test_named_groups_and_unicode_classes():
    match = search(compile_regex(r"order\s*#?(?P<order_id>\d+)"), "my order #123 please")
    assert match is not None and match.groupdict() == {"order_id": "123"}
    assert search(compile_regex(r"\p{L}+"), "مرحبا") is not None


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
    assert search(compile_regex("needle"), text) is None
    assert search(compile_regex("needle"), "a needle") is not None
