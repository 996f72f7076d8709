"""/api/conversations and /api/runs: what happened, per conversation and per turn."""

from __future__ import annotations

import builtins  # the handlers named `list` shadow the name in their class
from datetime import datetime

from litestar import Controller, get, patch, post, put
from litestar.exceptions import NotFoundException, ValidationException

from app.api.params import Limit, Offset
from app.roots import AppServices
from app.services import runs
from app.services.auth import Principal
from app.services.conversations import (
    AgentMessage,
    AIStateRead,
    AIStateUpdate,
    ConversationRead,
    ConversationSummary,
    ConversationUpdate,
    MessageRead,
)
from app.services.runs import RunRead, RunSummary


class ConversationController(Controller):
    path = "/api/conversations"
    tags = ["conversations"]

    @get("/")
    async def list(
        self,
        principal: Principal,
        services: AppServices,
        limit: Limit = 50,
        offset: Offset = 0,
        status: str | None = None,
    ) -> list[ConversationSummary]:
        return await services.conversations.list_conversations(
            principal.workspace_id, limit=limit, offset=offset, status=status
        )

    @get("/{conversation_id:str}")
    async def read(
        self, principal: Principal, services: AppServices, conversation_id: str
    ) -> ConversationRead:
        found = await services.conversations.get_conversation(principal.workspace_id, conversation_id)
        if found is None:
            raise NotFoundException(f"no conversation {conversation_id} in this workspace")
        return found

    @get("/{conversation_id:str}/messages")
    async def messages(
        self, principal: Principal, services: AppServices, conversation_id: str
    ) -> builtins.list[MessageRead]:
        found = await services.conversations.get_conversation(principal.workspace_id, conversation_id)
        if found is None:
            raise NotFoundException(f"no conversation {conversation_id} in this workspace")
        return found.messages

    @put("/{conversation_id:str}/ai", summary="Edit the AI state (ai_control_/ai_context_ keys)")
    async def update_ai(
        self, principal: Principal, services: AppServices, conversation_id: str, data: AIStateUpdate
    ) -> AIStateRead:
        state = await services.conversations.update_ai_state(principal.workspace_id, conversation_id, data)
        if state is None:
            raise NotFoundException(f"no conversation {conversation_id} in this workspace")
        return state

    @patch("/{conversation_id:str}")
    async def update(
        self, principal: Principal, services: AppServices, conversation_id: str, data: ConversationUpdate
    ) -> ConversationRead:
        if not await services.conversations.update_conversation(
            principal.workspace_id, conversation_id, data
        ):
            raise NotFoundException(f"no conversation {conversation_id} in this workspace")
        found = await services.conversations.get_conversation(principal.workspace_id, conversation_id)
        if found is None:
            raise NotFoundException(f"no conversation {conversation_id} in this workspace")
        return found

    @post("/{conversation_id:str}/messages", status_code=201, summary="Send a message as an agent")
    async def send(
        self, principal: Principal, services: AppServices, conversation_id: str, data: AgentMessage
    ) -> MessageRead:
        if not data.text.strip():
            raise ValidationException("text: write the message to send")
        sent = await services.conversations.send_agent_message(
            principal.workspace_id, conversation_id, data.text
        )
        if sent is None:
            raise NotFoundException(f"no conversation {conversation_id} in this workspace")
        return sent


class RunController(Controller):
    path = "/api/runs"
    tags = ["runs"]

    @get("/")
    async def list(
        self,
        principal: Principal,
        conversation_id: str | None = None,
        flow_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> builtins.list[RunSummary]:
        return await runs.list_runs(
            principal.workspace_id,
            conversation_id=conversation_id,
            flow_id=flow_id,
            status=status,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    @get("/{run_id:str}")
    async def read(self, principal: Principal, run_id: str) -> RunRead:
        found = await runs.get_run(principal.workspace_id, run_id)
        if found is None:
            raise NotFoundException(f"no run {run_id} in this workspace")
        return found
