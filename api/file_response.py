"""Responses for stored bytes: small ones whole, large ones by path or in chunks (ADR 019).

A small body read in one go and sent as one message is several times cheaper than a
stream. A large file goes by `http.response.pathsend` when the server offers it (Granian
sends it from Rust); otherwise (uvicorn, the in-process test client) it is streamed.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from fastapi import Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from usecase.common import primed

# read whole and sent as one body up to this size; streamed (or sent by path) above it
SMALL_BODY_BYTES = 64 * 1024
PATHSEND = 'http.response.pathsend'


async def read_small(chunks: AsyncIterator[bytes], limit: int = SMALL_BODY_BYTES) -> bytes:
    """All the chunks of a body known to be small; never more than `limit` bytes are kept."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    return bytes(body)


class HeadersOnlyResponse(Response):
    """What a GET would answer, without its body: the answer to a HEAD (RFC 9110 9.3.2).

    The status and headers exactly as given: no `Content-Length` is added when none is
    given, since a GET streamed without one (chunked) must not be described as empty
    (RFC 9110 8.6). Nothing is opened or sent beyond the head.
    """

    def __init__(self, headers: Mapping[str, str], status_code: int = 200) -> None:
        super().__init__(status_code=status_code)
        self.raw_headers = [
            (name.lower().encode('latin-1'), value.encode('latin-1'))
            for name, value in headers.items()
        ]


class WholeFileResponse(Response):
    """A whole stored file: sent by path when the server can, else streamed.

    The decision needs the ASGI scope, so it is taken when the response is sent; nothing
    has been sent when the file turns out to be missing, so that is still a problem
    response. A committed blob's path never changes, and a blob no row names any more
    stays for a grace period, so the server can open the path after `send` returns.
    """

    def __init__(
        self,
        path: Callable[[], Awaitable[str]],
        chunks: Callable[[], AsyncIterator[bytes]],
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(headers=headers)
        self._path = path
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if PATHSEND in scope.get('extensions', {}):
            path = await self._path()
            await send(
                {
                    'type': 'http.response.start',
                    'status': self.status_code,
                    'headers': self.raw_headers,
                }
            )
            await send({'type': PATHSEND, 'path': path})
            return
        stream = StreamingResponse(await primed(self._chunks()), headers=self.headers)
        await stream(scope, receive, send)
