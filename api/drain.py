"""A lingering read of the request body the app answered without reading to its end.

A request refused while its client is still sending (an upload over the quota or the
file size limit, by its `Content-Length` or part way through; 401; 404 for a chat that
is gone; a JSON body over its limit) is answered at once, and the client goes on sending.
Granian (hyper) closes such a connection as soon as the app is done, and a close with
unread bytes makes the kernel reset the connection: the client's sending fails, and a
client that reads the answer only once it has sent its request (a browser's upload,
most HTTP libraries) reports a network error instead of the problem. So, as nginx's
lingering close does, the rest of the body is read and dropped after the answer, for at
most `DRAIN_LIMIT_BYTES` and `DRAIN_SECONDS`, whichever ends first; a body still going
on then is cut off by the close. uvicorn (h11) reads and drops the rest itself: there
`receive` says the client is gone as soon as the answer is complete, and nothing is read
here. Each wait for a chunk is bounded
(`api/body.py:BodyChunkTimeout`, which wraps this middleware).
"""

import asyncio
import contextlib

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# above the default STORAGE_MAX_FILE_BYTES (100 MiB): an upload refused by the quota, or
# for a chat that is gone, can be read to its end
DRAIN_LIMIT_BYTES = 128 * 1024 * 1024
DRAIN_SECONDS = 10.0


class DrainUnreadBody:
    """Pure ASGI middleware: after the app, read what is left of the body, within bounds."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit_bytes: int = DRAIN_LIMIT_BYTES,
        limit_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.app = app
        self._limit_bytes = limit_bytes
        self._limit_seconds = limit_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        ended = False

        async def tracking_receive() -> Message:
            nonlocal ended
            message = await receive()
            ended = ended or _is_last(message)
            return message

        await self.app(scope, tracking_receive, send)
        if not ended and _has_body(scope):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._limit_seconds):
                    await _read_rest(receive, self._limit_bytes)


async def _read_rest(receive: Receive, limit_bytes: int) -> None:
    drained = 0
    while drained <= limit_bytes:
        message = await receive()
        drained += len(message.get('body', b''))
        if _is_last(message):
            return


def _is_last(message: Message) -> bool:
    """The body's last message, or the client gone."""
    return message['type'] != 'http.request' or not bool(message.get('more_body', False))


def _has_body(scope: Scope) -> bool:
    for name, value in scope['headers']:
        if name == b'content-length':
            return bool(value != b'0')
        if name == b'transfer-encoding':
            return True
    return False


def install_drain(app: FastAPI) -> None:
    """Wrap the whole stack, observability included: a request is logged and counted as
    soon as it is answered, not after its unread rest was read."""
    build_stack = app.build_middleware_stack

    def build_draining_stack() -> ASGIApp:
        return DrainUnreadBody(build_stack())

    app.build_middleware_stack = build_draining_stack  # type: ignore[method-assign]
