"""Refuse request bodies over a size cap with 413, before or while they are read."""

from __future__ import annotations

import asyncio
import contextlib
import json

from bannermatch.present.server.ratelimit import ASGIApp, Message, Receive, Scope, Send

#: a refused body of at most this size is read (and dropped) before the 413, for at most
#: this long: a client still sending then reads the answer instead of a reset connection
#: (the server can no longer read once it has answered)
DRAIN_BYTES = 32 << 20
DRAIN_SECONDS = 5.0


class _TooLarge(Exception):
    pass


def _too_large_body(limit: int) -> bytes:
    return json.dumps(
        {"detail": f"upload too large: the limit is {limit // (1024 * 1024)} MB ({limit:,} bytes)"}
    ).encode()


class BodyLimitMiddleware:
    """Bodies of requests to ``paths`` may hold at most ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int, paths: tuple[str, ...]):
        self.app = app
        self.limit = limit
        self.paths = paths

    async def _reply(self, send: Send) -> None:
        body = _too_large_body(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drain(receive: Receive) -> None:
        drained = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                while drained <= DRAIN_BYTES:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body"):
                        return
                    drained += len(message.get("body", b""))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            if int(declared) <= DRAIN_BYTES:
                await self._drain(receive)
            await self._reply(send)
            return
        received = 0
        overflow = False
        started = False
        more = True

        async def counting_receive() -> Message:
            nonlocal received, overflow, more
            message = await receive()
            if message["type"] == "http.request":
                more = bool(message.get("more_body"))
                received += len(message.get("body", b""))
                if received > self.limit:
                    overflow = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow:  # whatever the app answers to a cut-off body, the answer is 413
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:  # _TooLarge, or what the app made of it
            if not overflow:
                raise
        if overflow and not started:
            if more:
                await self._drain(receive)
            await self._reply(send)
