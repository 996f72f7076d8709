"""Typed variable extraction without an LLM: numbers, emails, phones, money, dates and product names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

import msgspec

from app.services.ai.classifier import ENGINE_LOCAL, normalize_text


class VariableSpec(msgspec.Struct, frozen=True):
    name: str
    prompt: str = ""
    required: bool = False
    default: Any = None
    type: str = ""
    """One of VariableType's values; "" infers it from the name and prompt."""


class Extraction(msgspec.Struct, frozen=True):
    values: dict[str, Any]
    missing: list[str]
    engine: str = ENGINE_LOCAL


class VariableType(str, Enum):
    NUMBER = "number"
    EMAIL = "email"
    PHONE = "phone"
    MONEY = "money"
    DATE = "date"
    PRODUCT = "product"
    TEXT = "text"


VARIABLE_TYPES = frozenset(t.value for t in VariableType)

# Order matters: "total_amount" is money before it is a number; "product_name" is a product.
_TYPE_HINTS: tuple[tuple[VariableType, tuple[str, ...]], ...] = (
    (VariableType.EMAIL, ("email", "e-mail", "mail", "correo", "بريد")),
    (VariableType.PHONE, ("phone", "mobile", "whatsapp", "telefono", "celular", "هاتف", "جوال", "رقم")),
    (
        VariableType.MONEY,
        ("price", "total", "money", "cost", "budget", "amount_paid", "precio", "importe", "سعر", "مبلغ"),
    ),
    (VariableType.DATE, ("date", "when", "day", "fecha", "cuando", "تاريخ", "موعد", "متى")),
    (
        VariableType.NUMBER,
        ("quantity", "qty", "count", "amount", "number", "units", "cantidad", "cuantos", "كمية", "عدد"),
    ),
    (VariableType.PRODUCT, ("product", "item", "model", "name", "producto", "articulo", "منتج", "اسم")),
)


# Type names people write in flows (JSON-schema and programming words) and what they mean here;
# None means "too generic: infer from the variable's name and prompt".
TYPE_ALIASES: dict[str, VariableType | None] = {
    "integer": VariableType.NUMBER,
    "int": VariableType.NUMBER,
    "float": VariableType.NUMBER,
    "decimal": VariableType.NUMBER,
    "quantity": VariableType.NUMBER,
    "amount": VariableType.MONEY,
    "currency": VariableType.MONEY,
    "price": VariableType.MONEY,
    "datetime": VariableType.DATE,
    "string": None,
    "str": None,
    "any": None,
    "": None,
}


def infer_type(spec: VariableSpec) -> VariableType:
    declared = (spec.type or "").strip().lower()
    if declared in VARIABLE_TYPES:
        return VariableType(declared)
    alias = TYPE_ALIASES.get(declared)
    if alias is not None:
        return alias
    haystack = normalize_text(f"{spec.name} {spec.prompt}").replace("_", " ")
    words = set(re.findall(r"\w+", haystack))
    for kind, hints in _TYPE_HINTS:
        for hint in hints:
            norm = normalize_text(hint)
            if norm in words or (len(norm) > 4 and norm in haystack):
                return kind
    return VariableType.TEXT


# --- numbers -------------------------------------------------------------------------------------

_NUMBER_WORDS: dict[str, int] = {
    **dict.fromkeys(["one", "a", "an", "single"], 1),
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "twenty": 20,
    "dozen": 12,
    "couple": 2,
    "pair": 2,
    "uno": 1,
    "una": 1,
    "un": 1,
    "dos": 2,
    "tres": 3,
    "cuatro": 4,
    "cinco": 5,
    "seis": 6,
    "siete": 7,
    "ocho": 8,
    "nueve": 9,
    "diez": 10,
    "once": 11,
    "doce": 12,
    "veinte": 20,
    "docena": 12,
    "par": 2,
    "واحد": 1,
    "واحده": 1,
    "اثنين": 2,
    "اثنان": 2,
    "اتنين": 2,
    "ثلاثه": 3,
    "ثلاث": 3,
    "اربعه": 4,
    "اربع": 4,
    "خمسه": 5,
    "خمس": 5,
    "سته": 6,
    "ست": 6,
    "سبعه": 7,
    "سبع": 7,
    "ثمانيه": 8,
    "ثماني": 8,
    "تسعه": 9,
    "تسع": 9,
    "عشره": 10,
    "عشر": 10,
    "عشرين": 20,
    **{
        w: n
        for n, words in (
            (13, ["trece"]),
            (14, ["catorce"]),
            (15, ["quince"]),
            (16, ["dieciseis"]),
            (17, ["diecisiete"]),
            (18, ["dieciocho"]),
            (19, ["diecinueve"]),
            (21, ["veintiuno", "veintiun", "veintiuna"]),
            (22, ["veintidos"]),
            (23, ["veintitres"]),
            (24, ["veinticuatro"]),
            (25, ["veinticinco"]),
            (26, ["veintiseis"]),
            (27, ["veintisiete"]),
            (28, ["veintiocho"]),
            (29, ["veintinueve"]),
            (30, ["treinta", "thirty", "ثلاثين", "ثلاثون"]),
            (40, ["cuarenta", "forty", "اربعين", "اربعون"]),
            (50, ["cincuenta", "fifty", "خمسين", "خمسون"]),
            (60, ["sesenta", "sixty", "ستين", "ستون"]),
            (70, ["setenta", "seventy", "سبعين", "سبعون"]),
            (80, ["ochenta", "eighty", "ثمانين", "ثمانون"]),
            (90, ["noventa", "ninety", "تسعين", "تسعون"]),
            (100, ["cien", "ciento", "hundred", "مائه", "مئه", "ميه", "ميه", "مية"]),
            (11, ["احد", "احدى"]),
            (12, ["اثنا", "اثني"]),
            (13, ["thirteen"]),
            (14, ["fourteen"]),
            (15, ["fifteen"]),
            (16, ["sixteen"]),
            (17, ["seventeen"]),
            (18, ["eighteen"]),
            (19, ["nineteen"]),
            (20, ["عشرون"]),
        )
        for w in words
    },
}
_TENS_AR = frozenset({"عشر", "عشره"})
"""After an Arabic unit, "عشر" makes a teen: "خمسه عشر" is 15 (and "احد/اثنا عشر" 11 and 12)."""
_AND_WORDS = frozenset({"y", "and", "e"})
# Articles count as 1 only for quantities, never when a digit is there ("a 20% discount").
_WEAK_NUMBER_WORDS = frozenset({"a", "an", "un", "una", "uno"})
_DIGITS_ONLY_RE = re.compile(r"\d+(?:[.,]\d+)?")
_TOKEN_WITH_DIGITS_RE = re.compile(r"[^\W_]+(?:[.,]\d+)?", re.UNICODE)
_NUM_RE = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)(?![\w])|(?<![\w.])(\d+)(?=[^\W\d])")
_WORD_RE = re.compile(r"\w+")


def _to_number(raw: str) -> int | float:
    raw = (
        raw.replace(",", ".")
        if raw.count(",") == 1 and "." not in raw and len(raw.split(",")[1]) != 3
        else raw.replace(",", "")
    )
    value = float(raw)
    return int(value) if value.is_integer() else value


def extract_numbers(text: str) -> list[int | float]:
    """Numbers in reading order: digits (any script) and number words in English, Spanish, Arabic."""
    norm = normalize_text(text)
    found: list[tuple[int, int | float]] = []
    for m in _NUM_RE.finditer(norm):
        found.append((m.start(), _to_number(m.group(1) or m.group(2))))
    words = [(m.start(), m.group(0)) for m in _WORD_RE.finditer(norm)]
    found.extend((words[start][0], value) for start, _, value in number_phrases([w for _, w in words]))
    if not found:
        # An Arabic dual says two by itself: "قطعتين" (two pieces), "علبتين" (two boxes).
        found.extend((pos, 2) for pos, w in words if len(w) >= 5 and w.endswith("تين"))
    return [v for _, v in sorted(found, key=lambda p: p[0])]


def _word_value(word: str) -> int | None:
    if word in _WEAK_NUMBER_WORDS:
        return None
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    # Arabic joins "and" to the next word: "خمسه وعشرين" is 5 + 20.
    if word.startswith("و") and word[1:] in _NUMBER_WORDS:
        return _NUMBER_WORDS[word[1:]]
    return None


def number_phrases(words: Sequence[str]) -> list[tuple[int, int, int | float]]:
    """(first word, word after the phrase, value) for each spelled-out number in normalised words.

    Compounds add up: "treinta y cinco" 35, "twenty one" 21, "خمسه عشر" 15, "خمسه وعشرين" 25.
    """
    out: list[tuple[int, int, int | float]] = []
    i = 0
    while i < len(words):
        value = _word_value(words[i])
        if value is None:
            i += 1
            continue
        start, total, j = i, value, i + 1
        if value in (11, 12) and j < len(words) and words[j] in _TENS_AR:
            j += 1  # "احد عشر", "اثنا عشر"
        elif value < 10 and j < len(words) and words[j] in _TENS_AR:
            total, j = value + 10, j + 1
        while j < len(words):
            joined = words[j] in _AND_WORDS and j + 1 < len(words)
            nxt = words[j + 1] if joined else words[j]
            step = 2 if joined else 1
            more = _word_value(nxt)
            if more is None:
                break
            round_tens = 20 <= total < 100 and total % 10 == 0
            if round_tens and 0 < more < 10:  # "twenty one", "treinta y cinco"
                total, j = total + more, j + step
            elif total < 10 and 20 <= more < 100 and more % 10 == 0 and nxt.startswith("و"):
                total, j = total + more, j + step  # "خمسه وعشرين": units come first in Arabic
            elif more == 100 and total < 10:
                total, j = total * 100, j + step
            else:
                break
        out.append((start, j, total))
        i = j
    return out


def extract_quantity(text: str) -> int | float | None:
    """The first count in the text that is not part of a date, a phone number, an email or money."""
    cleaned = _EMAIL_RE.sub(" ", normalize_text(text))
    cleaned = _PHONE_RE.sub(" ", cleaned)
    cleaned = _ISO_DATE_RE.sub(" ", cleaned)
    cleaned = _DMY_DATE_RE.sub(" ", cleaned)
    for money in _money_matches(cleaned):
        cleaned = cleaned.replace(money, " ")
    numbers = extract_numbers(cleaned)
    if numbers:
        return numbers[0]
    for word in _WORD_RE.findall(normalize_text(cleaned)):
        if word in _WEAK_NUMBER_WORDS:
            return 1
    return None


# --- emails and phones ---------------------------------------------------------------------------

_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_RE = re.compile(r"(?<![\w])\+?[\d٠-٩۰-۹][\d٠-٩۰-۹ ()\-.]{6,}[\d٠-٩۰-۹](?![\w])")


def extract_email(text: str) -> str | None:
    m = _EMAIL_RE.search(text)
    return m.group(0).rstrip(".").lower() if m else None


def extract_phone(text: str) -> str | None:
    """A phone number as `+digits` or `digits`, separators dropped; at least 7 digits."""
    for m in _PHONE_RE.finditer(normalize_text(text)):
        raw = m.group(0).strip()
        digits = re.sub(r"\D", "", raw)
        if 7 <= len(digits) <= 15 and not _ISO_DATE_RE.fullmatch(raw) and not _DMY_DATE_RE.fullmatch(raw):
            return ("+" if raw.startswith("+") else "") + digits
    return None


# --- money ---------------------------------------------------------------------------------------

_CURRENCIES: dict[str, str] = {
    "$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "dolar": "USD",
    "dolares": "USD",
    "دولار": "USD",
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "يورو": "EUR",
    "£": "GBP",
    "gbp": "GBP",
    "pound": "GBP",
    "pounds": "GBP",
    "libras": "GBP",
    "جنيه": "GBP",
    "sar": "SAR",
    "riyal": "SAR",
    "riyals": "SAR",
    "ريال": "SAR",
    "ر.س": "SAR",
    "aed": "AED",
    "dirham": "AED",
    "dirhams": "AED",
    "درهم": "AED",
    "د.ا": "AED",
    "egp": "EGP",
    "mxn": "MXN",
    "pesos": "MXN",
    "peso": "MXN",
    "kwd": "KWD",
    "دينار": "KWD",
    "qar": "QAR",
}
_CUR_ALT = "|".join(sorted((re.escape(c) for c in _CURRENCIES), key=len, reverse=True))
_AMOUNT = r"\d+(?:[.,]\d+)*"
_MONEY_BEFORE_RE = re.compile(rf"(?<!\w)({_CUR_ALT})\s?({_AMOUNT})", re.IGNORECASE)
_MONEY_AFTER_RE = re.compile(rf"({_AMOUNT})\s?({_CUR_ALT})(?!\w)", re.IGNORECASE)


def _money_matches(text: str) -> list[str]:
    norm = normalize_text(text)
    return [m.group(0) for m in (*_MONEY_BEFORE_RE.finditer(norm), *_MONEY_AFTER_RE.finditer(norm))]


def extract_money(text: str) -> dict[str, Any] | None:
    """{"amount": 20, "currency": "USD"} from "$20", "20 USD", "٢٠ ريال", "20 euros"."""
    norm = normalize_text(text)
    hits: list[tuple[int, str, str]] = []
    for m in _MONEY_BEFORE_RE.finditer(norm):
        hits.append((m.start(), m.group(2), m.group(1)))
    for m in _MONEY_AFTER_RE.finditer(norm):
        hits.append((m.start(), m.group(1), m.group(2)))
    if not hits:
        return None
    _, amount, currency = min(hits)
    return {"amount": _to_number(amount), "currency": _CURRENCIES[currency.lower()]}


# --- dates ---------------------------------------------------------------------------------------

_ISO_DATE_RE = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_DMY_DATE_RE = re.compile(r"(?<!\d)(\d{1,2})[/.](\d{1,2})[/.](\d{2,4})(?!\d)")
_RELATIVE_DAYS: dict[str, int] = {
    "today": 0,
    "tonight": 0,
    "hoy": 0,
    "اليوم": 0,
    "tomorrow": 1,
    "manana": 1,
    "غدا": 1,
    "بكره": 1,
    "بكرا": 1,
    "الغد": 1,
    "yesterday": -1,
    "ayer": -1,
    "امس": -1,
    "البارحه": -1,
}
_RELATIVE_PHRASES: dict[str, int] = {"day after tomorrow": 2, "pasado manana": 2, "بعد غد": 2, "بعد بكره": 2}


def extract_date(text: str, *, now: datetime | None = None, month_first: bool = False) -> str | None:
    """An ISO date (YYYY-MM-DD): ISO or day/month/year text, or today/tomorrow/mañana/غدا from `now`."""
    norm = normalize_text(text)
    m = _ISO_DATE_RE.search(norm)
    if m:
        return _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = _DMY_DATE_RE.search(norm)
    if m:
        first, second, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        year += 2000 if year < 100 else 0
        day, month = (second, first) if month_first or second > 12 else (first, second)
        return _safe_date(year, month, day)
    today = (now or datetime.now()).date()
    for phrase, offset in _RELATIVE_PHRASES.items():
        if phrase in norm:
            return (today + timedelta(days=offset)).isoformat()
    for word in _WORD_RE.findall(norm):
        if word in _RELATIVE_DAYS:
            return (today + timedelta(days=_RELATIVE_DAYS[word])).isoformat()
    return None


def _safe_date(year: int, month: int, day: int) -> str | None:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


# --- product names -------------------------------------------------------------------------------

# Single quotes only count around whole words, so "I'd like" is no quote.
_QUOTED_RE = re.compile(r"[\"“«]([^\"“”«»]{2,60})[\"”»]|(?<!\w)'([^']{2,60})'(?!\w)")
# A capitalised or camel-cased word (iPhone, Galaxy, PlayStation), optionally followed by
# model tokens (15, S24, Pro, Max): the way product names are written in chat.
_PRODUCT_RE = re.compile(
    r"(?<![\w])((?:[A-Z][\w-]*|[a-z]+[A-Z][\w-]*)(?:\s+(?:[A-Z][\w-]*|[a-zA-Z]?\d+[\w-]*))*)"
)
_SENTENCE_WORDS = frozenset(
    {
        "i",
        "i'm",
        "im",
        "hi",
        "hello",
        "hey",
        "please",
        "can",
        "could",
        "would",
        "do",
        "does",
        "is",
        "are",
        "the",
        "a",
        "an",
        "my",
        "we",
        "you",
        "what",
        "how",
        "when",
        "where",
        "hola",
        "quiero",
        "quisiera",
        "me",
        "mi",
        "el",
        "la",
        "los",
        "las",
        "yes",
        "no",
        "ok",
        "thanks",
        "gracias",
        "buy",
        "order",
        "want",
        "need",
        "get",
    }
)
_ARABIC_PRODUCT_RE = re.compile(r"(?:ايفون|ايباد|سامسونج|جالاكسي|بلايستيشن|ماك\s?بوك)(?:\s?\d+)?")


# Words that start a product phrase's reading (a purchase verb) or end it (a request's tail).
_BUY_WORDS = frozenset(
    normalize_text(w)
    for w in [
        "buy",
        "order",
        "purchase",
        "get",
        "want",
        "need",
        "comprar",
        "compro",
        "pedir",
        "pido",
        "encargar",
        "quiero",
        "necesito",
        "dame",
        "das",
        "quisiera",
        "شراء",
        "اشتري",
        "ابغى",
        "ابي",
        "اريد",
        "بدي",
        "اطلب",
    ]
)
_PHRASE_END = frozenset(
    normalize_text(w)
    for w in [
        "please",
        "pls",
        "for",
        "to",
        "and",
        "with",
        "by",
        "today",
        "tomorrow",
        "now",
        "asap",
        "thanks",
        "por",
        "favor",
        "para",
        "y",
        "con",
        "hoy",
        "manana",
        "ahora",
        "gracias",
        "من",
        "فضلك",
        "لو",
        "سمحت",
        "اليوم",
        "بكره",
        "ل",
        "الى",
        "و",
    ]
)
_LEADING_FILLERS = frozenset(
    {"a", "an", "the", "some", "of", "un", "una", "unos", "unas", "el", "la", "los", "las"}
)
_CONNECTORS = frozenset({"of", "de", "del"})
_MAX_PRODUCT_WORDS = 3


def _phrase_after(tokens: list[str], norms: list[str], start: int) -> str | None:
    words: list[str] = []
    i = start
    while i < len(tokens) and norms[i] in _LEADING_FILLERS and not words:
        i += 1
    while i < len(tokens) and len(words) < _MAX_PRODUCT_WORDS:
        norm = norms[i]
        if norm in _PHRASE_END or norm in _SENTENCE_WORDS or _DIGITS_ONLY_RE.fullmatch(norm):
            break
        words.append(tokens[i])
        i += 1
    while words and normalize_text(words[-1]) in _CONNECTORS:
        words.pop()
    return " ".join(words) or None


def _lower_case_product(text: str) -> str | None:
    """The words after a quantity ("3 iphones", "dos camisas", "ثلاثه قمصان") or a purchase verb."""
    tokens = _TOKEN_WITH_DIGITS_RE.findall(text)
    norms = [normalize_text(t) for t in tokens]
    phrases = number_phrases(norms)
    anchors = [end for _, end, _ in phrases]
    anchors += [i + 1 for i, n in enumerate(norms) if _DIGITS_ONLY_RE.fullmatch(n)]
    for end in sorted(anchors):
        found = _phrase_after(tokens, norms, end)
        if found:
            return found
    for i, norm in enumerate(norms):
        if norm in _BUY_WORDS:
            found = _phrase_after(tokens, norms, i + 1)
            if found and normalize_text(found.split()[0]) not in _BUY_WORDS:
                return found
    return None


def extract_product(text: str) -> str | None:
    """A quoted name, else the first capitalised/camel-case name with its model tokens, else the
    words after a quantity or a purchase verb ("i want 3 iphones", "quiero dos camisas").

    Returns the text as written (plural kept): "I want to buy 3 iPhones" gives "iPhones".
    """
    m = _QUOTED_RE.search(text)
    if m:
        return (m.group(1) or m.group(2)).strip()
    for m in _PRODUCT_RE.finditer(text):
        words = m.group(1).split()
        while words and words[0].lower() in _SENTENCE_WORDS:
            words.pop(0)
        if words:
            return " ".join(words)
    m = _ARABIC_PRODUCT_RE.search(normalize_text(text))
    if m:
        return m.group(0)
    return _lower_case_product(text)


# --- variables -----------------------------------------------------------------------------------


def extract_value(text: str, kind: VariableType, *, now: datetime | None = None) -> Any:
    if kind is VariableType.NUMBER:
        return extract_quantity(text)
    if kind is VariableType.EMAIL:
        return extract_email(text)
    if kind is VariableType.PHONE:
        return extract_phone(text)
    if kind is VariableType.MONEY:
        return extract_money(text)
    if kind is VariableType.DATE:
        return extract_date(text, now=now)
    if kind is VariableType.PRODUCT:
        return extract_product(text)
    m = _QUOTED_RE.search(text)
    return (m.group(1) or m.group(2)).strip() if m else None


def extract_variables(
    text: str, variables: Sequence[VariableSpec], *, now: datetime | None = None
) -> Extraction:
    """Fill each variable from the text by its (given or inferred) type, then its default.

    A required variable with neither lands in `missing`, so the caller can ask for it.
    """
    values: dict[str, Any] = {}
    missing: list[str] = []
    for spec in variables:
        value = extract_value(text, infer_type(spec), now=now)
        if value is None:
            value = spec.default
        if value is None:
            if spec.required:
                missing.append(spec.name)
            continue
        values[spec.name] = value
    return Extraction(values=values, missing=missing)
