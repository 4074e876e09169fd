"""HEAD (RFC 9110 9.3.2) of the download, link, history and export routes: the status and
headers of the GET, without the body and without reading the file."""

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from api.settings import Settings

SECRET = 'link-secret-for-head-requests-0123456789'
CONTENT = b'0123456789abcdefghij'
# what may differ between two answers to the same request
UNSTABLE_HEADERS = frozenset({'x-request-id', 'date', 'server'})


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(link_secret=SECRET, max_file_bytes=3_000_000, default_quota_bytes=10**8)


def stable_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in UNSTABLE_HEADERS}


async def assert_head_answers_like_get(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    got = await client.get(url, headers=headers)
    head = await client.head(url, headers=headers)
    assert head.status_code == got.status_code, url
    assert stable_headers(head) == stable_headers(got), url
    if got.status_code < 400:  # a problem's body is dropped by the server
        assert head.content == b''
    return head


async def _file_urls(client: httpx.AsyncClient, chat_id: str, content: bytes) -> list[str]:
    record = (
        await client.put(
            f'/v1/chats/{chat_id}/files/by-name/f.txt',
            content=content,
            headers={'Content-Type': 'text/plain'},
        )
    ).json()
    link = await client.post(
        f'/v1/chats/{chat_id}/files/{record["file_id"]}/link', json={'expires_in': 60}
    )
    return [f'/v1/chats/{chat_id}/files/{record["file_id"]}/content', link.json()['url']]


@pytest.mark.parametrize('size', [0, len(CONTENT), 200_000])
async def test_head_of_a_download_answers_like_its_get(
    client: httpx.AsyncClient, chat_id: str, size: int
) -> None:
    content = (CONTENT * (size // len(CONTENT) + 1))[:size]
    for url in await _file_urls(client, chat_id, content):
        head = await assert_head_answers_like_get(client, url)
        assert head.status_code == 200
        assert head.headers['content-length'] == str(size)


@pytest.mark.parametrize(
    'headers',
    [
        {'Range': 'bytes=2-4'},
        {'Range': 'bytes=-3'},
        {'Range': 'bytes=99-'},
        {'If-Match': '"nope"'},
        {'If-None-Match': '*'},
        {'Range': 'bytes=2-4', 'If-Range': '"nope"'},
    ],
)
async def test_head_of_a_conditional_or_ranged_download_answers_like_its_get(
    client: httpx.AsyncClient, chat_id: str, headers: dict[str, str]
) -> None:
    for url in await _file_urls(client, chat_id, CONTENT):
        await assert_head_answers_like_get(client, url, headers)


async def test_head_of_a_missing_file_or_a_bad_link_answers_like_its_get(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    content_url, link_url = await _file_urls(client, chat_id, CONTENT)
    missing = content_url.replace(chat_id, '00000000-0000-4000-8000-000000000000')
    assert (await assert_head_answers_like_get(client, missing)).status_code == 404
    tampered = link_url.replace('signature=', 'signature=x')
    assert (await assert_head_answers_like_get(client, tampered)).status_code == 403


@pytest.mark.parametrize('history', [b'', b'# hello\n', b'x' * 300_000])
async def test_head_of_the_history_answers_like_its_get(
    client: httpx.AsyncClient, chat_id: str, history: bytes
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    etag = (await client.put(url, content=history)).headers['etag']
    head = await assert_head_answers_like_get(client, url)
    assert head.headers['content-length'] == str(len(history))
    await assert_head_answers_like_get(client, url, {'If-None-Match': etag})
    await assert_head_answers_like_get(client, url, {'If-Match': '"nope"'})


async def test_head_of_an_export_answers_like_its_get(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    await _file_urls(client, chat_id, CONTENT)
    head = await assert_head_answers_like_get(client, f'/v1/chats/{chat_id}/export')
    # streamed: the GET has no length, and the HEAD must not claim an empty body
    assert 'content-length' not in head.headers
    assert head.headers['content-type'] == 'application/zip'


OPEN_DESCRIPTORS = Path('/proc/self/fd')


def _open_descriptors() -> int:
    return len(list(OPEN_DESCRIPTORS.iterdir()))


@pytest.mark.skipif(not OPEN_DESCRIPTORS.is_dir(), reason='counts /proc/self/fd')
async def test_head_leaves_no_file_open(client: httpx.AsyncClient, chat_id: str) -> None:
    url = f'/v1/chats/{chat_id}/history'
    # above the storage's read chunk (1 MiB): the read leaves it open after its first chunk
    assert (await client.put(url, content=b'x' * 1_500_000)).status_code == 200
    (content_url, _) = await _file_urls(client, chat_id, CONTENT * 10_000)
    await client.head(url)
    await client.head(content_url)
    gc.collect()
    await asyncio.sleep(0.05)
    before = _open_descriptors()
    for _ in range(20):
        assert (await client.head(url)).status_code == 200
        assert (await client.head(content_url)).status_code == 200
    gc.collect()
    await asyncio.sleep(0.05)
    assert _open_descriptors() <= before


async def test_a_wrong_method_names_head_among_the_allowed(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    content_url, link_url = await _file_urls(client, chat_id, CONTENT)
    for url in (content_url, link_url, f'/v1/chats/{chat_id}/export'):
        response = await client.put(url)
        assert response.status_code == 405, url
        assert response.headers['allow'] == 'GET, HEAD'
    history = await client.delete(f'/v1/chats/{chat_id}/history')
    assert history.headers['allow'] == 'GET, HEAD, POST, PUT'
    chats = await client.put('/v1/chats')
    assert chats.headers['allow'] == 'GET, POST'
