"""The first hour: set up the owner and workspace on an empty server, and send a first message to try it."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import msgspec

from app.services import auth, flows_store
from app.services.channels import store as channel_store
from app.services.channels.items import InboundItem, MessageType

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "flows" / "examples"
CONSOLE_NAME = "Local console"
TRY_SENDER = "+15550100"
"""The customer that the welcome page's form writes as: one conversation for every try."""


class Accepts(Protocol):
    """The ingress of the message path (app.pipeline.ingress.Ingress), as the roots built it."""

    async def accept(self, channel: channel_store.ChannelRecord, items: list[InboundItem]) -> list[Any]: ...


class Welcome(msgspec.Struct, frozen=True):
    """What the set-up made, for the welcome page."""

    console_channel_id: str | None
    flow_names: list[str]


async def set_up(*, email: str, password: str, workspace: str, with_examples: bool) -> auth.Principal:
    """Create the owner (refused once a user exists); with examples, a console channel and the example flows."""
    principal = await auth.create_owner(email=email, password=password, workspace=workspace)
    log.info("owner created", extra={"email": principal.email, "workspace_id": principal.workspace_id})
    if with_examples:
        await console_channel(principal.workspace_id)
        documents = [msgspec.json.decode(p.read_bytes()) for p in sorted(EXAMPLES_DIR.glob("*.flow.json"))]
        result = await flows_store.import_flows(principal.workspace_id, documents, author=principal.email)
        if result.errors:  # the shipped examples are tested; this means a broken checkout
            raise RuntimeError(f"the example flows in {EXAMPLES_DIR} did not import: {result.errors}")
    return principal


async def console_channel(workspace_id: str) -> channel_store.ChannelRead:
    """The workspace's console channel: the first one, created when there is none."""
    for channel in await channel_store.list_channels(workspace_id):
        if channel.kind is channel_store.ChannelKind.CONSOLE:
            return channel
    return await channel_store.create_channel(
        workspace_id, channel_store.ChannelCreate(kind=channel_store.ChannelKind.CONSOLE, name=CONSOLE_NAME)
    )


async def welcome(workspace_id: str) -> Welcome:
    channels = await channel_store.list_channels(workspace_id)
    console = next((c for c in channels if c.kind is channel_store.ChannelKind.CONSOLE), None)
    flows = await flows_store.list_flows(workspace_id)
    return Welcome(console_channel_id=console.id if console else None, flow_names=[f.name for f in flows])


async def send_try_message(workspace_id: str, text: str, *, ingress: Accepts) -> str:
    """Receive `text` on the console channel as a customer would send it; returns the conversation id."""
    channel = await console_channel(workspace_id)
    record = await channel_store.lookup_scoped(workspace_id, channel.id)
    if record is None:  # deleted between the two reads
        raise channel_store.ChannelError("the console channel was just deleted; try again")
    item = InboundItem(
        provider_message_id=f"try-{uuid.uuid4().hex}",
        phone_number_id=record.id,
        from_phone=TRY_SENDER,
        contact_name="Test customer",
        contact_first_name="Test",
        contact_last_name="customer",
        type=MessageType.TEXT.value,
        text=text,
        timestamp=time.time(),
    )
    accepted = await ingress.accept(record, [item])
    return accepted[0].conversation_id
