"""Micro-benchmark of the channel wire formats: parse and verify costs per webhook, printed as JSON."""

from __future__ import annotations

import json
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.services.channels.generic_wire import parse_generic
from app.services.channels.signatures import sign_sha256, verify_sha256
from app.services.channels.whatsapp_wire import build_text_message, parse_webhook

SECRET = "bench-app-secret"


def _text_envelope(messages: int) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550000001",
                                    "phone_number_id": "106540352242922",
                                },
                                "contacts": [{"profile": {"name": "Bench Sender"}, "wa_id": "15551230000"}],
                                "messages": [
                                    {
                                        "from": "15551230000",
                                        "id": f"wamid.bench{index:06d}",
                                        "timestamp": "1750000000",
                                        "type": "text",
                                        "text": {"body": "Hello, is the blue one still in stock?"},
                                    }
                                    for index in range(messages)
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def _per_call_us(func, *, number: int) -> float:
    best = min(timeit.repeat(func, number=number, repeat=5))
    return round(best / number * 1e6, 3)


def main() -> None:
    text = _text_envelope(1)
    batch = _text_envelope(100)
    header = sign_sha256(SECRET, text)
    generic = json.dumps(
        {"message_id": "g1", "from": "+15551230000", "text": "Hello", "timestamp": 1750000000}
    ).encode()
    result = {
        "text_payload_bytes": len(text),
        "parse_webhook_text_us": _per_call_us(lambda: parse_webhook(text), number=20_000),
        "parse_webhook_100_messages_us": _per_call_us(lambda: parse_webhook(batch), number=500),
        "verify_sha256_text_us": _per_call_us(lambda: verify_sha256(SECRET, text, header), number=50_000),
        "parse_generic_us": _per_call_us(lambda: parse_generic(generic, channel_ref="c1"), number=20_000),
        "build_text_message_us": _per_call_us(
            lambda: build_text_message("15551230000", "Thanks!"), number=50_000
        ),
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
