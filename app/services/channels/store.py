"""Channels: create, list and look up (with decrypted secrets, cached briefly per process)."""

from __future__ import annotations

import asyncio
import enum
import uuid
from typing import Any

import msgspec

from app.db.tables import Channel
from app.services import secrets
from app.services.cache import BoundedCache


class ChannelKind(str, enum.Enum):
    WHATSAPP = "whatsapp"
    GENERIC = "generic"
    CONSOLE = "console"


class ChannelCreate(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/channels`: secrets are write-only."""

    kind: ChannelKind
    name: str
    phone_number_id: str = ""
    access_token: str = ""
    app_secret: str = ""
    verify_token: str = ""
    secret: str = ""


class ChannelRead(msgspec.Struct):
    id: str
    kind: ChannelKind
    name: str
    phone_number_id: str
    webhook_path: str
    has_access_token: bool
    has_app_secret: bool
    has_verify_token: bool
    has_secret: bool
    created_at: str


class ChannelRecord(msgspec.Struct, frozen=True):
    """A channel as the ingress and the senders need it, secrets in clear (memory only)."""

    id: str
    workspace_id: str
    kind: ChannelKind
    name: str
    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str
    secret: str


class ChannelError(ValueError):
    """Invalid channel input; the message names the field and what to do."""


_CACHE_TTL_S = 30.0
# Channels that exist, by id: a webhook URL naming no channel is never cached (its id is a stranger's).
_cache: BoundedCache[str, ChannelRecord] = BoundedCache(max_entries=10_000, ttl_s=_CACHE_TTL_S)
# Reads in flight, by id: the turns of a flush job (or a burst of webhooks) that miss the cache
# together (at start, and each time the entry expires) wait for one query instead of each running its own.
_loading: dict[str, asyncio.Task[ChannelRecord | None]] = {}


def webhook_path(kind: ChannelKind, channel_id: str) -> str:
    if kind is ChannelKind.CONSOLE:
        return f"/webhooks/generic/{channel_id}"
    return f"/webhooks/{kind.value}/{channel_id}"


def _check(data: ChannelCreate) -> None:
    if not data.name.strip():
        raise ChannelError("name: give the channel a name")
    if data.kind is ChannelKind.WHATSAPP:
        missing = [
            f
            for f in ("phone_number_id", "access_token", "app_secret", "verify_token")
            if not getattr(data, f)
        ]
        if missing:
            raise ChannelError(
                f"{', '.join(missing)}: a WhatsApp channel needs the phone number id, access token, app "
                "secret and verify token from the Meta app dashboard (WhatsApp > API Setup)"
            )
        # It becomes a path segment of every Graph API request: digits only, as Meta gives it.
        pnid = data.phone_number_id.strip()
        if not (pnid.isascii() and pnid.isdigit()) or len(pnid) > 64:
            raise ChannelError(
                "phone_number_id: Meta's phone number id is a number of up to 64 digits "
                "(WhatsApp > API Setup > Phone number ID), not the phone number itself"
            )
    if data.kind is ChannelKind.GENERIC and not data.secret:
        raise ChannelError("secret: a generic channel needs a secret to verify X-Switchboard-Signature")


def _read(row: dict[str, Any]) -> ChannelRead:
    kind = ChannelKind(row["kind"])
    return ChannelRead(
        id=str(row["id"]),
        kind=kind,
        name=row["name"],
        phone_number_id=row["phone_number_id"],
        webhook_path=webhook_path(kind, str(row["id"])),
        has_access_token=bool(row["access_token_enc"]),
        has_app_secret=bool(row["app_secret_enc"]),
        has_verify_token=bool(row["verify_token_enc"]),
        has_secret=bool(row["secret_enc"]),
        created_at=row["created_at"].isoformat(),
    )


async def create_channel(workspace_id: str, data: ChannelCreate) -> ChannelRead:
    _check(data)
    channel = Channel(
        workspace=workspace_id,
        kind=data.kind.value,
        name=data.name.strip(),
        phone_number_id=data.phone_number_id.strip(),
        access_token_enc=secrets.encrypt(data.access_token),
        app_secret_enc=secrets.encrypt(data.app_secret),
        verify_token_enc=secrets.encrypt(data.verify_token),
        secret_enc=secrets.encrypt(data.secret),
    )
    await channel.save()
    return _read(channel.to_dict())


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def list_channels(workspace_id: str) -> list[ChannelRead]:
    rows = await Channel.select().where(Channel.workspace == workspace_id).order_by(Channel.created_at)
    return [_read(r) for r in rows]


async def get_channel_read(workspace_id: str, channel_id: str) -> ChannelRead | None:
    cid = _uuid_or_none(channel_id)
    if cid is None:
        return None
    row = await Channel.select().where((Channel.id == cid) & (Channel.workspace == workspace_id)).first()
    return _read(row) if row else None


async def delete_channel(workspace_id: str, channel_id: str) -> bool:
    cid = _uuid_or_none(channel_id)
    if cid is None:
        return False
    deleted = (
        await Channel.delete()
        .where((Channel.id == cid) & (Channel.workspace == workspace_id))
        .returning(Channel.id)
    )
    _cache.pop(str(cid))
    return bool(deleted)


async def lookup(channel_id: str) -> ChannelRecord | None:
    """The channel a webhook names, for ingress (not workspace-scoped: the id is the secret path)."""
    hit = _cache.get(channel_id)
    if hit is not None:
        return hit
    loop = asyncio.get_running_loop()
    loading = _loading.get(channel_id)
    if loading is None or loading.get_loop() is not loop:
        loading = loop.create_task(_load(channel_id))
        _loading[channel_id] = loading
        loading.add_done_callback(lambda task: _forget_loading(channel_id, task))
    # Shielded: a caller that gives up does not cancel the read the others wait for.
    return await asyncio.shield(loading)


def _forget_loading(channel_id: str, task: asyncio.Task[ChannelRecord | None]) -> None:
    if _loading.get(channel_id) is task:
        del _loading[channel_id]


async def _load(channel_id: str) -> ChannelRecord | None:
    cid = _uuid_or_none(channel_id)
    row = await Channel.select().where(Channel.id == cid).first() if cid else None
    if row is None:
        return None
    record = ChannelRecord(
        id=str(row["id"]),
        workspace_id=str(row["workspace"]),
        kind=ChannelKind(row["kind"]),
        name=row["name"],
        phone_number_id=row["phone_number_id"],
        access_token=secrets.decrypt(row["access_token_enc"]),
        app_secret=secrets.decrypt(row["app_secret_enc"]),
        verify_token=secrets.decrypt(row["verify_token_enc"]),
        secret=secrets.decrypt(row["secret_enc"]),
    )
    _cache.put(record.id, record)
    return record


async def lookup_scoped(workspace_id: str, channel_id: str) -> ChannelRecord | None:
    record = await lookup(channel_id)
    return record if record and record.workspace_id == workspace_id else None
