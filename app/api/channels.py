"""/api/channels: create and list channels; secrets are write-only."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.exceptions import NotFoundException

from app.services.auth import Principal
from app.services.channels import store
from app.services.channels.store import ChannelCreate, ChannelRead


class ChannelController(Controller):
    path = "/api/channels"
    tags = ["channels"]

    @post("/")
    async def create(self, principal: Principal, data: ChannelCreate) -> ChannelRead:
        return await store.create_channel(principal.workspace_id, data)

    @get("/")
    async def list(self, principal: Principal) -> list[ChannelRead]:
        return await store.list_channels(principal.workspace_id)

    @get("/{channel_id:str}")
    async def read(self, principal: Principal, channel_id: str) -> ChannelRead:
        channel = await store.get_channel_read(principal.workspace_id, channel_id)
        if channel is None:
            raise NotFoundException(f"no channel {channel_id} in this workspace")
        return channel

    @delete("/{channel_id:str}")
    async def remove(self, principal: Principal, channel_id: str) -> None:
        if not await store.delete_channel(principal.workspace_id, channel_id):
            raise NotFoundException(f"no channel {channel_id} in this workspace")
