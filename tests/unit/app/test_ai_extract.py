"""Typed variable extraction: numbers in three scripts, emails, phones, money, dates, products."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.services.ai.extract import VariableSpec, extract_variables, infer_type

NOW = datetime(2026, 5, 10, 9, 30)


def test_buy_iphones_gives_product_as_written_and_quantity() -> None:
    result = extract_variables("I want to buy 3 iPhones", [VariableSpec("product"), VariableSpec("quantity")])
    # The product is kept as written, plural included: the webhook sees what the customer typed.
    assert result.values == {"product": "iPhones", "quantity": 3}
    assert result.missing == []
    assert result.engine == "local"


@pytest.mark.parametrize(
    ("text", "quantity"),
    [
        ("أريد شراء ٣ آيفون", 3),
        ("quiero tres camisetas", 3),
        ("I'd like two of them", 2),
        ("أريد ثلاثة", 3),
        ("send 12 boxes", 12),
        ("I want a coffee", 1),
        ("1.5 kg please", 1.5),
    ],
)
def test_quantities(text: str, quantity: float) -> None:
    assert extract_variables(text, [VariableSpec("quantity")]).values["quantity"] == quantity


def test_quantity_ignores_phone_email_date_and_money() -> None:
    text = "call +34 612 345 678 or mail a1@b.com on 2026-06-01, budget $20, I need 4"
    assert extract_variables(text, [VariableSpec("count")]).values == {"count": 4}


@pytest.mark.parametrize(
    ("text", "money"),
    [
        ("it costs $20", {"amount": 20, "currency": "USD"}),
        ("20 USD", {"amount": 20, "currency": "USD"}),
        ("٢٠ ريال", {"amount": 20, "currency": "SAR"}),
        ("20 euros", {"amount": 20, "currency": "EUR"}),
        ("€ 9.99 each", {"amount": 9.99, "currency": "EUR"}),
    ],
)
def test_money(text: str, money: dict) -> None:
    assert extract_variables(text, [VariableSpec("total_price")]).values == {"total_price": money}


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("deliver on 2026-06-01", "2026-06-01"),
        ("el 12/05/2026 por favor", "2026-05-12"),
        ("tomorrow please", "2026-05-11"),
        ("para mañana", "2026-05-11"),
        ("غدا إن شاء الله", "2026-05-11"),
        ("today", "2026-05-10"),
        ("pasado mañana", "2026-05-12"),
    ],
)
def test_dates_relative_to_now(text: str, iso: str) -> None:
    assert extract_variables(text, [VariableSpec("delivery_date")], now=NOW).values == {"delivery_date": iso}


def test_email_and_phone() -> None:
    result = extract_variables(
        "write to Ana.Lopez@Example.com or call +1 (415) 555-0100",
        [VariableSpec("email"), VariableSpec("phone")],
    )
    assert result.values == {"email": "ana.lopez@example.com", "phone": "+14155550100"}


def test_arabic_indic_phone() -> None:
    assert extract_variables("رقمي ٠٥٠١٢٣٤٥٦٧", [VariableSpec("phone")]).values == {"phone": "0501234567"}


@pytest.mark.parametrize(
    ("text", "product"),
    [
        ("can I get a Galaxy S24 please", "Galaxy S24"),
        ("I want 2 iPhone 15 Pro", "iPhone 15 Pro"),
        ('I\'d like the "Blue Mug"', "Blue Mug"),
        ("quiero dos «Café Latte»", "Café Latte"),
    ],
)
def test_products(text: str, product: str) -> None:
    assert extract_variables(text, [VariableSpec("product")]).values == {"product": product}


def test_defaults_and_missing() -> None:
    specs = [
        VariableSpec("quantity", default=1),
        VariableSpec("email", required=True),
        VariableSpec("phone", required=True, default="unknown"),
        VariableSpec("note"),
    ]
    result = extract_variables("hello there", specs)
    assert result.values == {"quantity": 1, "phone": "unknown"}
    assert result.missing == ["email"]


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (VariableSpec("qty"), "number"),
        (VariableSpec("how_many", prompt="How many units?", type="number"), "number"),
        (VariableSpec("customer_email"), "email"),
        (VariableSpec("contact", prompt="Your phone number?"), "phone"),
        (VariableSpec("total"), "money"),
        (VariableSpec("when"), "date"),
        (VariableSpec("item"), "product"),
        (VariableSpec("comment"), "text"),
    ],
)
def test_type_inference(spec: VariableSpec, kind: str) -> None:
    assert infer_type(spec).value == kind


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (VariableSpec("quantity", type="integer"), "number"),
        (VariableSpec("product", type="string"), "product"),
        (VariableSpec("total", type="float"), "number"),
        # An unknown type must not break every message at run time: the name decides.
        (VariableSpec("customer_email", type="colour"), "email"),
    ],
)
def test_type_aliases_and_unknown_types(spec: VariableSpec, kind: str) -> None:
    assert infer_type(spec).value == kind


def test_seed_order_variables_are_extracted() -> None:
    result = extract_variables(
        "I want to buy 3 iPhones",
        [VariableSpec("product", type="string", required=True), VariableSpec("quantity", type="integer")],
    )
    assert result.values == {"product": "iPhones", "quantity": 3} and result.missing == []


@pytest.mark.parametrize(
    ("text", "product", "quantity"),
    [
        ("i want to buy 3 iphones", "iphones", 3),
        ("can i order two phone cases please", "phone cases", 2),
        ("quiero comprar dos camisas", "camisas", 2),
        ("me das quince botellas de agua", "botellas de agua", 15),
        ("necesito veintidós sillas para la fiesta", "sillas", 22),
        ("أريد شراء ثلاثة قمصان", "قمصان", 3),
        ("ابغى خمسة عشر كرتون ماء", "كرتون ماء", 15),
        ("buy a macbook", "macbook", 1),
    ],
)
def test_lower_case_products_with_plurals_and_number_words(text: str, product: str, quantity: int) -> None:
    result = extract_variables(text, [VariableSpec("product"), VariableSpec("quantity")])
    assert result.values == {"product": product, "quantity": quantity}


@pytest.mark.parametrize(
    ("text", "quantity"),
    [
        ("quiero trece", 13),
        ("dame treinta y cinco unidades", 35),
        ("cien cajas", 100),
        ("أريد عشرين قطعة", 20),
        ("اثنا عشر كوب", 12),
        ("أبغى قطعتين", 2),
        ("ثلاثين علبة", 30),
    ],
)
def test_spanish_and_arabic_number_words(text: str, quantity: int) -> None:
    assert extract_variables(text, [VariableSpec("quantity")]).values == {"quantity": quantity}
