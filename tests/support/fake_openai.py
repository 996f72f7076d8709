"""A fake OpenAI chat-completions server on 127.0.0.1 (tool calls, JSON-in-content, errors, delays, usage)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse

API_KEY = "sk-fake-test"
COMPLETIONS_PATH = "/v1/chat/completions"


class FakeCall(msgspec.Struct, kw_only=True):
    """One request the fake answered (errors included)."""

    kind: str
    """The forced tool's name (choose_action, extract_variables, classify_reply), or "reply"."""
    body: dict[str, Any]
    authorization: str
    status: int

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def system(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] == "system")

    def tool_parameters(self) -> dict[str, Any]:
        return self.body["tools"][0]["function"]["parameters"]

    def detect_payload(self) -> dict[str, Any]:
        return json.loads(self.messages[-1]["content"])


Answer = Callable[[FakeCall], Any]


class FakeOpenAI:
    """Answers chat completions the way tests set it up.

    - `detect`, `extract`, `classify`, `reply`: what a call of that kind answers (a value, or a
      function of the FakeCall). `detect` may name the action by its display name
      ({"action": "Create order", "confidence": 0.95}); it is turned into the prompt's action id, and
      so are the display names of a "scores" mapping ({"Create order": 0.95, "Track order": 0.9}).
    - `errors`: responses (status codes or PeerResponses) served first, one per request.
    - `delay_s`: every answer waits this long.
    - `json_mode`: structured answers come as JSON text in `content` instead of a tool call.
    - `malformed`: structured answers carry arguments that are not JSON.
    - `usage`: (prompt_tokens, completion_tokens) reported per successful call.
    """

    def __init__(self, peer: HttpPeer, *, api_key: str = API_KEY) -> None:
        self.peer = peer
        self.api_key = api_key
        self.calls: list[FakeCall] = []
        self.detect: Any = {"action": None, "confidence": 0.0, "reasons": "nothing fits"}
        self.extract: Any = {}
        self.classify: Any = "unclear"
        self.reply: Any = "Hello from the fake LLM."
        self.errors: list[int | PeerResponse] = []
        self.delay_s = 0.0
        self.json_mode = False
        self.malformed = False
        self.usage = (20, 10)
        peer.route("POST", COMPLETIONS_PATH, self._handle)

    @property
    def base_url(self) -> str:
        return self.peer.url("/v1")

    def calls_of(self, kind: str) -> list[FakeCall]:
        return [c for c in self.calls if c.kind == kind and c.status == 200]

    async def _handle(self, request: PeerRequest) -> PeerResponse:
        body = request.json()
        tools = body.get("tools") or []
        kind = tools[0]["function"]["name"] if tools else "reply"
        call = FakeCall(
            kind=kind, body=body, authorization=request.headers.get("authorization", ""), status=200
        )
        if call.authorization != f"Bearer {self.api_key}":
            call.status = 401
            self.calls.append(call)
            return PeerResponse.json(
                {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}, status=401
            )
        if self.errors:
            error = self.errors.pop(0)
            response = (
                error
                if isinstance(error, PeerResponse)
                else PeerResponse.json(
                    {"error": {"message": f"fake error {error}", "type": "server_error"}},
                    status=error,
                    # Keep the SDK's backoff short in tests.
                    headers={"retry-after-ms": "20"},
                )
            )
            call.status = response.status
            self.calls.append(call)
            return response
        self.calls.append(call)
        if kind == "reply":
            value = self.reply(call) if callable(self.reply) else self.reply
            message: dict[str, Any] = {"role": "assistant", "content": value}
        else:
            value = self._structured(kind, call)
            arguments = "{not json" if self.malformed else json.dumps(value, ensure_ascii=False)
            if self.json_mode:
                message = {"role": "assistant", "content": arguments}
            else:
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{uuid.uuid4().hex[:12]}",
                            "type": "function",
                            "function": {"name": kind, "arguments": arguments},
                        }
                    ],
                }
        prompt_tokens, completion_tokens = self.usage
        return PeerResponse(
            status=200,
            headers={"Content-Type": "application/json"},
            delay_s=self.delay_s,
            body=json.dumps(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": body.get("model", ""),
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "stop" if kind == "reply" or self.json_mode else "tool_calls",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
                ensure_ascii=False,
            ).encode(),
        )

    def _structured(self, kind: str, call: FakeCall) -> dict[str, Any]:
        if kind == "choose_action":
            answer = self.detect(call) if callable(self.detect) else dict(self.detect)
            if "action" in answer:
                name = answer.pop("action")
                actions = call.detect_payload()["actions"]
                answer["action_id"] = next((a["id"] for a in actions if a["name"] == name), "none")
            if isinstance(answer.get("scores"), dict):
                ids = {a["name"]: a["id"] for a in call.detect_payload()["actions"]}
                answer["scores"] = [{"action_id": ids[n], "score": v} for n, v in answer["scores"].items()]
            answer.setdefault("reasons", "")
            return answer
        if kind == "extract_variables":
            values = self.extract(call) if callable(self.extract) else dict(self.extract)
            return {name: values.get(name) for name in call.tool_parameters()["properties"]}
        if kind == "classify_reply":
            return {"decision": self.classify(call) if callable(self.classify) else self.classify}
        return {}


@asynccontextmanager
async def fake_openai(*, api_key: str = API_KEY) -> AsyncIterator[FakeOpenAI]:
    async with HttpPeer() as peer:
        yield FakeOpenAI(peer, api_key=api_key)
