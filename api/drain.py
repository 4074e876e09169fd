"""Read what is left of a request body the app answered without reading (ADR 019).

An upload refused early (413 by its `Content-Length`, 401, 404 before the body) leaves the
client still sending. Granian (hyper) closes such a connection at once, and a close with
unread bytes in the socket makes the kernel reset it: the client may never see the
answer. Reading the rest first lets it arrive; only bodies that declare a length of at
most `DRAIN_LIMIT_BYTES` are read, others are cut off as before, and each wait for a
chunk is bounded (`api/body.py:BodyChunkTimeout`, which wraps this middleware).
"""

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_LIMIT_BYTES = 1024 * 1024
CONTENT_BODY_SCOPE_KEY = 'chat_storage.content_body'


class DrainUnreadBody:
    """Pure ASGI middleware: after the response, read up to the limit of the unread body."""

    def __init__(self, app: ASGIApp, *, limit_bytes: int = DRAIN_LIMIT_BYTES) -> None:
        self.app = app
        self._limit = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        ended = False

        async def tracking_receive() -> Message:
            nonlocal ended
            message = await receive()
            if message['type'] != 'http.request' or not message.get('more_body', False):
                ended = True
            return message

        await self.app(scope, tracking_receive, send)
        if not ended and _has_body(scope, self._limit):
            drained = 0
            while drained <= self._limit:
                message = await receive()
                if message['type'] != 'http.request':
                    break
                drained += len(message.get('body', b''))
                if not message.get('more_body', False):
                    break


def _has_body(scope: Scope, limit: int) -> bool:
    """A body of a declared length within the limit, or a chunked body of a content route
    (an upload: read up to the limit only; a JSON route's chunked body is never read on
    our own account)."""
    for name, value in scope['headers']:
        if name == b'content-length':
            return value.isdigit() and 0 < int(value) <= limit
    return bool(scope.get(CONTENT_BODY_SCOPE_KEY))


def mark_content_body(scope: Scope) -> None:
    """The route streams its body as content (an upload, a history write)."""
    scope[CONTENT_BODY_SCOPE_KEY] = True


def install_drain(app: FastAPI) -> None:
    """Wrap the whole stack, observability included: a request is logged and counted as
    soon as it is answered, not after its unread rest was read."""
    build_stack = app.build_middleware_stack

    def build_draining_stack() -> ASGIApp:
        return DrainUnreadBody(build_stack())

    app.build_middleware_stack = build_draining_stack  # type: ignore[method-assign]
