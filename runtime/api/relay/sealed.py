"""An engine call's reply sealed to an E2EE client's key, as Chutes' instances send it.

Wraps the ASGI `send` of a relay. A successful whole reply is held until complete, then sealed
(`application/octet-stream`). A stream starts with an `e2e_init` event and carries each event
sealed as `data: {"e2e": …}`; what holds no prompt or reply text goes in clear, as the client
expects it: keep-alive comments, `[DONE]`, the usage-only chunk of chat and completions, and
errors (as `e2e_error`). An error reply before the stream (a 4xx or 5xx) goes in clear too:
the client surfaces it as it is.
"""

from __future__ import annotations

import json

from starlette.types import Message, Send

from runtime.protocol.e2ee import StreamSeal, seal_reply

DONE = b"data: [DONE]"


class SealedSend:
    """`send` for a reply to one E2EE request, sealed to `response_key`."""

    def __init__(self, send: Send, response_key: bytes) -> None:
        self.send = send
        self.response_key = response_key
        self.mode = ""  # "clear", "whole" or "stream", from the reply's start
        self.start: Message | None = None
        self.held = bytearray()
        self.stream: StreamSeal | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self._start(message)
        elif self.mode == "clear":
            await self.send(message)
        elif self.mode == "whole":
            await self._whole(message)
        else:
            await self._events(message)

    async def _start(self, message: Message) -> None:
        headers = [(k, v) for k, v in message.get("headers", []) if k != b"content-length"]
        content_type = dict(headers).get(b"content-type", b"")
        if message["status"] != 200:
            self.mode = "clear"
            await self.send(message)
        elif content_type.startswith(b"text/event-stream"):
            self.mode = "stream"
            self.stream = StreamSeal(self.response_key)
            await self.send({**message, "headers": headers})
            init = json.dumps({"e2e_init": self.stream.init}).encode()
            event = b"data: " + init + b"\n\n"
            await self.send({"type": "http.response.body", "body": event, "more_body": True})
        else:
            self.mode = "whole"
            others = [(k, v) for k, v in headers if k != b"content-type"]
            self.start = {**message, "headers": others}

    async def _whole(self, message: Message) -> None:
        self.held += message.get("body", b"")
        if message.get("more_body", False):
            return
        assert self.start is not None
        sealed = seal_reply(self.response_key, bytes(self.held))
        headers = [
            *self.start["headers"],
            (b"content-type", b"application/octet-stream"),
            (b"content-length", b"%d" % len(sealed)),
        ]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": sealed})

    async def _events(self, message: Message) -> None:
        self.held += message.get("body", b"")
        more = message.get("more_body", False)
        cut = self.held.rfind(b"\n\n") + 2
        if cut >= 2 or not more:
            ready = bytes(self.held[:cut]) if more else bytes(self.held)
            del self.held[: len(ready)]
            out = b"".join(self._event(e) for e in ready.split(b"\n\n") if e.strip())
            if out or not more:
                await self.send({"type": "http.response.body", "body": out, "more_body": more})

    def _event(self, event: bytes) -> bytes:
        assert self.stream is not None
        if event.startswith(b":") or event == DONE:
            return event + b"\n\n"
        data = _data_of(event)
        if data is not None and (_usage_only(data) or "error" in data):
            if "error" in data:
                data = {"e2e_error": data["error"]}
            return b"data: " + json.dumps(data).encode() + b"\n\n"
        return b'data: {"e2e": "' + self.stream.seal(event).encode() + b'"}\n\n'


def _data_of(event: bytes) -> dict[str, object] | None:
    """An event's JSON when it is one `data:` line (chat and completions events are)."""
    if not event.startswith(b"data:") or b"\n" in event:
        return None
    try:
        data = json.loads(event[5:])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _usage_only(data: dict[str, object]) -> bool:
    """The usage chunk of chat and completions streams: no choices, so no text."""
    return data.get("usage") is not None and data.get("choices") == []
