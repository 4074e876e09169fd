"""The lingering read after an answer (api/drain.py), driven message by message."""

import asyncio
import time
from collections.abc import Iterator

from starlette.types import Message, Receive, Scope, Send

from api.drain import DRAIN_LIMIT_BYTES, DRAIN_SECONDS, DrainUnreadBody

CHUNK = b'x' * 1000


def _scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {'type': 'http', 'method': 'PUT', 'path': '/upload', 'headers': headers}


class Client:
    """A client sending `chunks` body messages of `CHUNK` (forever when None)."""

    def __init__(self, chunks: int | None, *, pause: float = 0.0) -> None:
        self.chunks = chunks
        self.pause = pause
        self.sent = 0

    async def receive(self) -> Message:
        if self.pause:
            await asyncio.sleep(self.pause)
        self.sent += 1
        more = self.chunks is None or self.sent < self.chunks
        return {'type': 'http.request', 'body': CHUNK, 'more_body': more}


async def _answers_after(reads: int, scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads `reads` messages of the body, then answers."""
    for _ in range(reads):
        await receive()
    await send({'type': 'http.response.start', 'status': 413, 'headers': []})
    await send({'type': 'http.response.body', 'body': b'refused'})


async def _serve(
    client: Client,
    *,
    reads: int,
    headers: list[tuple[bytes, bytes]],
    limit_bytes: int = DRAIN_LIMIT_BYTES,
    limit_seconds: float = DRAIN_SECONDS,
) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await _answers_after(reads, scope, receive, send)

    await DrainUnreadBody(app, limit_bytes=limit_bytes, limit_seconds=limit_seconds)(
        _scope(headers), client.receive, send
    )
    return sent


LENGTH = [(b'content-length', b'10000')]
CHUNKED = [(b'transfer-encoding', b'chunked')]


async def test_the_rest_of_a_body_answered_unread_is_read_to_its_end() -> None:
    client = Client(10)

    sent = await _serve(client, reads=0, headers=LENGTH)

    assert [m['type'] for m in sent] == ['http.response.start', 'http.response.body']
    assert client.sent == 10


async def test_the_rest_of_a_body_refused_part_way_is_read_to_its_end() -> None:
    client = Client(10)

    await _serve(client, reads=3, headers=CHUNKED)

    assert client.sent == 10


async def test_a_body_read_to_its_end_is_not_read_again() -> None:
    client = Client(2)

    await _serve(client, reads=2, headers=LENGTH)

    assert client.sent == 2


async def test_a_request_without_a_body_is_not_read() -> None:
    client = Client(1)

    await _serve(client, reads=0, headers=[])
    await _serve(client, reads=0, headers=[(b'content-length', b'0')])

    assert client.sent == 0


async def test_the_read_stops_after_its_byte_limit() -> None:
    client = Client(None)

    await _serve(client, reads=0, headers=CHUNKED, limit_bytes=5 * len(CHUNK))

    # the message that passes the limit is the last one read
    assert client.sent == 6


async def test_the_read_stops_after_its_time_limit() -> None:
    client = Client(None, pause=0.01)
    started = time.monotonic()

    await _serve(client, reads=0, headers=CHUNKED, limit_seconds=0.2)

    assert 0.2 <= time.monotonic() - started < 2.0
    assert client.sent < 30


async def test_a_client_gone_ends_the_read() -> None:
    messages: Iterator[Message] = iter(
        [
            {'type': 'http.request', 'body': CHUNK, 'more_body': True},
            {'type': 'http.disconnect'},
        ]
    )
    read: list[Message] = []

    async def receive() -> Message:
        message = next(messages)
        read.append(message)
        return message

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await _answers_after(0, scope, receive, send)

    await DrainUnreadBody(app)(_scope(LENGTH), receive, _ignore)

    assert [m['type'] for m in read] == ['http.request', 'http.disconnect']


async def _ignore(message: Message) -> None:
    pass
