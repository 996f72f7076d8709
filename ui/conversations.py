"""Conversations: the list, a live view (SSE), the editable AI state, tags, status, and the agent send box."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from app.services import auth, conversations
from ui.forms import FieldError, form_to_config
from ui.render import fragment, page
from ui.security import csrf_token

log = logging.getLogger(__name__)

# Which partials an event kind changes; each is sent as a named SSE event the page swaps in.
_PARTS_BY_KIND = {
    "message": ("messages", "meta"),
    "status": ("messages",),
    "ai_state": ("ai",),
    "conversation": ("meta",),
    "run": ("messages", "ai", "meta"),
}
_TEMPLATES = {
    "messages": "partials/message_log.html",
    "ai": "partials/ai_state.html",
    "meta": "partials/conversation_meta.html",
}


def _one_line(html: str) -> str:
    """One SSE data line: htmx's SSE extension kept only the first line of multi-line data in our tests.

    A newline in text becomes the character reference &#10;, which renders the same in text and textareas.
    """
    return html.replace("\r\n", "\n").replace("\n", "&#10;")


def _conversations(request: Request) -> conversations.Conversations:
    return request.app.state.services.conversations


async def _load(
    request: Request, principal: auth.Principal, conversation_id: str
) -> conversations.ConversationRead:
    convo = await _conversations(request).get_conversation(principal.workspace_id, conversation_id)
    if convo is None:
        raise NotFoundException("This conversation does not exist in your workspace.")
    return convo


class ConversationsController(Controller):
    path = "/conversations"

    @get("/", name="conversations")
    async def list_page(
        self, request: Request, principal: auth.Principal, status: str | None = None
    ) -> Template:
        items = await _conversations(request).list_conversations(
            principal.workspace_id, status=status or None, limit=100
        )
        return page(
            request,
            "pages/conversations.html",
            partial="partials/conversations_table.html",
            nav="conversations",
            conversations=items,
            status=status or "",
        )

    @get("/{conversation_id:str}", name="conversation")
    async def detail(self, request: Request, principal: auth.Principal, conversation_id: str) -> Template:
        return page(
            request,
            "pages/conversation.html",
            nav="conversations",
            convo=await _load(request, principal, conversation_id),
        )

    @get("/{conversation_id:str}/events", name="conversation_events")
    async def live(
        self, request: Request, principal: auth.Principal, conversation_id: str
    ) -> ServerSentEvent:
        """Server-sent events: re-rendered partials of this conversation whenever the service publishes a change."""
        await _load(request, principal, conversation_id)
        engine = request.app.template_engine
        token = csrf_token(request)
        grant = auth.session_grant(request.scope.get("session"))

        async def still_logged_in() -> bool:
            # A stream outlives the request that checked its session: a logout (here, everywhere, or by a
            # password change) must stop it too, not only the next request.
            return grant is not None and await auth.principal_for_session(grant) is not None

        async def render(parts: tuple[str, ...]) -> list[ServerSentEventMessage]:
            convo = await _conversations(request).get_conversation(principal.workspace_id, conversation_id)
            if convo is None:
                return []
            return [
                ServerSentEventMessage(
                    data=_one_line(
                        engine.get_template(_TEMPLATES[p]).render(convo=convo, csrf=token, sse=True)
                    ),
                    event=p,
                )
                for p in parts
            ]

        async def stream() -> AsyncGenerator[ServerSentEventMessage, None]:
            yield ServerSentEventMessage(comment="live", retry=2000)
            async with request.app.state.services.publisher.subscribe(principal.workspace_id) as subscription:
                # Subscribed: the state rendered now plus every later event misses nothing that
                # changed since the page was rendered.
                for message in await render(tuple(_TEMPLATES)):
                    yield message
                async for event in subscription:
                    if event.conversation_id == conversation_id:
                        if not await still_logged_in():
                            log.info(
                                "live view closed: its session ended",
                                extra={"conversation_id": conversation_id},
                            )
                            return
                        for message in await render(_PARTS_BY_KIND.get(event.kind, tuple(_TEMPLATES))):
                            yield message

        return ServerSentEvent(stream())

    @post("/{conversation_id:str}/messages", name="conversation_send")
    async def send(self, request: Request, principal: auth.Principal, conversation_id: str) -> Template:
        form = await request.form()
        text = (form.get("text") or "").strip()
        error = None
        if not text:
            error = "Write a message first."
        elif (
            await _conversations(request).send_agent_message(principal.workspace_id, conversation_id, text)
            is None
        ):
            error = "The message could not be sent: check the conversation's channel in Settings."
        convo = await _load(request, principal, conversation_id)
        return fragment(
            request,
            "partials/send_box.html",
            status_code=422 if error else 200,
            convo=convo,
            send_error=error,
            draft=text if error else "",
        )

    @post("/{conversation_id:str}/ai", name="conversation_ai")
    async def ai(self, request: Request, principal: auth.Principal, conversation_id: str) -> Template:
        form = await request.form()
        values, errors = form_to_config(form.multi_items())
        prompt = (values.get("custom_prompt") or "").strip()
        context = values.get("context") or None
        if context is not None and not isinstance(context, dict):
            # The Struct's constructor checks no types: a list here became the stored context (a JSON array).
            errors.append(FieldError("context", "Context: give key and value pairs, not a list or a text."))
        update = conversations.AIStateUpdate(
            ai_enabled=bool(values.get("ai_enabled")),
            custom_prompt=prompt or None,
            clear_custom_prompt=not prompt,
            context=context,
            reset_context=bool(values.get("reset_context")),
        )
        if not errors:
            await _conversations(request).update_ai_state(principal.workspace_id, conversation_id, update)
        convo = await _load(request, principal, conversation_id)
        return fragment(
            request,
            "partials/ai_state.html",
            status_code=422 if errors else 200,
            convo=convo,
            saved=not errors,
            ai_errors=[e.message for e in errors],
        )

    @post("/{conversation_id:str}/meta", name="conversation_meta")
    async def meta(self, request: Request, principal: auth.Principal, conversation_id: str) -> Template:
        form = await request.form()
        update = conversations.ConversationUpdate(
            status=(form.get("status") or "").strip() or None,
            add_tags=[t.strip() for t in (form.get("add_tag") or "").split(",") if t.strip()],
            remove_tags=list(form.getall("remove_tag")) if "remove_tag" in form else [],
        )
        await _conversations(request).update_conversation(principal.workspace_id, conversation_id, update)
        return fragment(
            request, "partials/conversation_meta.html", convo=await _load(request, principal, conversation_id)
        )
