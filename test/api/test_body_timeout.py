"""A request body that stalls: `408 request_timeout` once no chunk arrives in time.

In-process, the request body is an async generator that stops yielding; test/e2e
drips bytes on a real socket.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from data_layout import blob_area, staging_entries

from api.settings import Settings

CHUNK_TIMEOUT = 0.3
# the longest a stalled request may take to be answered here, well above the timeout
ANSWER_WITHIN = 5.0


@pytest.fixture
def backend_name() -> str:
    """The HTTP edge is under test, not the metadata store: SQLite only."""
    return 'sqlite'


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(body_chunk_timeout_seconds=CHUNK_TIMEOUT)


async def stalling(*chunks: bytes) -> AsyncIterator[bytes]:
    """The chunks, then nothing more, ever."""
    for chunk in chunks:
        yield chunk
    await asyncio.Event().wait()


async def dripping(chunks: list[bytes], every: float) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(every)
        yield chunk


async def timed(
    request: Coroutine[Any, Any, httpx.Response],
) -> tuple[httpx.Response, float]:
    """The answer, and the seconds it took; a failure when it takes too long."""
    started = time.monotonic()
    response = await asyncio.wait_for(request, ANSWER_WITHIN)
    return response, time.monotonic() - started


async def nothing_kept(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path, blobs_before: set[str]
) -> None:
    assert (await client.get(f'/v1/chats/{chat_id}/files')).json()['items'] == []
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 0
    assert blob_area(data_dir) == blobs_before
    assert staging_entries(data_dir) == set()


def assert_timed_out(response: httpx.Response, seconds: float) -> None:
    assert response.status_code == 408, response.text
    assert response.headers['content-type'] == 'application/problem+json'
    assert response.headers['connection'] == 'close'
    body = response.json()
    assert (body['code'], body['title']) == ('request_timeout', 'Request Timeout')
    assert body['detail'] == 'No part of the request body arrived within 0.3 s.'
    assert CHUNK_TIMEOUT <= seconds < ANSWER_WITHIN


@pytest.mark.parametrize('length', [None, 3_000])
async def test_a_stalled_upload_is_408_and_leaves_nothing(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path, length: int | None
) -> None:
    headers = {'Content-Length': str(length)} if length else {}
    blobs_before = blob_area(data_dir)
    response, seconds = await timed(
        client.put(
            f'/v1/chats/{chat_id}/files/by-name/a.bin',
            content=stalling(b'x' * 1_000),
            headers=headers,
        )
    )
    assert_timed_out(response, seconds)
    await nothing_kept(client, chat_id, data_dir, blobs_before)


async def test_a_stalled_multipart_upload_is_408_and_leaves_nothing(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    head = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
        + b'x' * 1_000
    )
    blobs_before = blob_area(data_dir)
    response, seconds = await timed(
        client.post(
            f'/v1/chats/{chat_id}/files',
            content=stalling(head),
            headers={'Content-Type': 'multipart/form-data; boundary=B'},
        )
    )
    assert_timed_out(response, seconds)
    await nothing_kept(client, chat_id, data_dir, blobs_before)


async def test_a_stalled_history_write_is_408_and_changes_nothing(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    before = await client.get(url)
    response, seconds = await timed(client.put(url, content=stalling(b'# new\n')))
    assert_timed_out(response, seconds)
    after = await client.get(url)
    assert (after.content, after.headers['etag']) == (before.content, before.headers['etag'])


async def test_a_stalled_json_body_is_408_not_a_parse_error(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    """FastAPI reads a body model's body itself; a stall is not a body it could not parse."""
    response, seconds = await timed(
        client.post(
            '/v1/chats',
            content=stalling(b'{"title": "sta'),
            headers={'Content-Type': 'application/json'},
        )
    )
    assert_timed_out(response, seconds)
    chats = (await client.get('/v1/chats')).json()['items']
    assert [chat['chat_id'] for chat in chats] == [chat_id]


async def test_a_body_that_keeps_coming_is_taken_however_long_it_takes(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    """The limit is on the wait for each chunk, not on the whole body."""
    chunks = [bytes([65 + i]) * 100 for i in range(8)]
    every = CHUNK_TIMEOUT / 3
    response, seconds = await timed(
        client.put(f'/v1/chats/{chat_id}/files/by-name/slow.txt', content=dripping(chunks, every))
    )
    assert response.status_code == 201, response.text
    assert seconds > CHUNK_TIMEOUT
    file_id = response.json()['file_id']
    stored = await client.get(f'/v1/chats/{chat_id}/files/{file_id}/content')
    assert stored.content == b''.join(chunks)


async def test_a_stalled_body_the_answer_did_not_need_is_read_no_longer_than_the_timeout(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    """A refusal before the body (here `401`) reads what is left of it afterwards, so that
    the answer arrives (api/drain.py); a stalled rest ends that read, not the request's
    answer."""
    response, seconds = await timed(
        client.put(
            f'/v1/chats/{chat_id}/files/by-name/a.bin',
            content=stalling(b'x' * 100),
            headers={'Content-Length': '1000', 'X-User-Id': 'nobody'},
        )
    )
    assert response.status_code == 401
    assert response.json()['code'] == 'unauthenticated'
    assert seconds < ANSWER_WITHIN


def test_the_timeout_is_a_positive_number_of_seconds(
    make_settings: Callable[..., Settings],
) -> None:
    assert make_settings().body_chunk_timeout_seconds == 30.0
    for refused in (0, -1, float('inf'), float('nan')):
        with pytest.raises(ValueError, match='body_chunk_timeout_seconds'):
            make_settings(body_chunk_timeout_seconds=refused)
