"""The five core-intent personalities: defaults, and each workspace's edits."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import msgspec

from app.db.tables import Personality


class CoreIntent(str, enum.Enum):
    SALES = "sales"
    SUPPORT = "support"
    GENERAL = "general"
    TECHNICAL = "technical"
    BILLING = "billing"


class PersonalityRead(msgspec.Struct):
    intent: CoreIntent
    system_prompt: str
    fallback_text: str
    customised: bool = False


class PersonalityUpdate(msgspec.Struct, forbid_unknown_fields=True):
    system_prompt: str
    fallback_text: str


DEFAULTS: dict[CoreIntent, PersonalityRead] = {
    CoreIntent.SALES: PersonalityRead(
        intent=CoreIntent.SALES,
        system_prompt="You are a friendly sales assistant. Help the customer choose and buy; be concise and "
        "never invent prices or stock you were not given.",
        fallback_text="Thanks for your interest! A member of our sales team will get back to you shortly.",
    ),
    CoreIntent.SUPPORT: PersonalityRead(
        intent=CoreIntent.SUPPORT,
        system_prompt="You are a patient customer-support agent. Acknowledge the problem, ask for what you "
        "need (order number, account), and explain the next step.",
        fallback_text="Sorry to hear that. We've received your message and our support team will help you soon.",
    ),
    CoreIntent.GENERAL: PersonalityRead(
        intent=CoreIntent.GENERAL,
        system_prompt="You are a helpful assistant for this business. Answer briefly and politely.",
        fallback_text="Hi! Thanks for your message. How can we help you today?",
    ),
    CoreIntent.TECHNICAL: PersonalityRead(
        intent=CoreIntent.TECHNICAL,
        system_prompt="You are a technical support specialist. Give clear, step-by-step instructions and ask "
        "for error messages or device details when needed.",
        fallback_text="Thanks for the details. Our technical team will look into it and reply shortly.",
    ),
    CoreIntent.BILLING: PersonalityRead(
        intent=CoreIntent.BILLING,
        system_prompt="You are a billing assistant. Be precise about invoices, payments and refunds; never "
        "ask for full card numbers.",
        fallback_text="Thanks! Our billing team will check your account and get back to you.",
    ),
}


async def list_personalities(workspace_id: str) -> list[PersonalityRead]:
    rows = await Personality.select().where(Personality.workspace == workspace_id)
    edited = {r["intent"]: r for r in rows}
    result = []
    for intent, default in DEFAULTS.items():
        row = edited.get(intent.value)
        if row is None:
            result.append(default)
        else:
            result.append(
                PersonalityRead(
                    intent=intent,
                    system_prompt=row["system_prompt"],
                    fallback_text=row["fallback_text"],
                    customised=True,
                )
            )
    return result


async def get_personality(workspace_id: str, intent: CoreIntent) -> PersonalityRead:
    row = (
        await Personality.select()
        .where((Personality.workspace == workspace_id) & (Personality.intent == intent.value))
        .first()
    )
    if row is None:
        return DEFAULTS[intent]
    return PersonalityRead(
        intent=intent, system_prompt=row["system_prompt"], fallback_text=row["fallback_text"], customised=True
    )


async def update_personality(
    workspace_id: str, intent: CoreIntent, data: PersonalityUpdate
) -> PersonalityRead:
    now = datetime.now(UTC)
    updated = (
        await Personality.update(
            {
                Personality.system_prompt: data.system_prompt,
                Personality.fallback_text: data.fallback_text,
                Personality.updated_at: now,
            }
        )
        .where((Personality.workspace == workspace_id) & (Personality.intent == intent.value))
        .returning(Personality.id)
    )
    if not updated:
        await Personality(
            workspace=workspace_id,
            intent=intent.value,
            system_prompt=data.system_prompt,
            fallback_text=data.fallback_text,
            updated_at=now,
        ).save()
    return await get_personality(workspace_id, intent)
