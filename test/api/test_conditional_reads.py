"""Conditional and ranged reads (RFC 9110 section 13) of `/content`, signed links and
`history`: `If-Match`, `If-None-Match`, `If-Range`."""

from collections.abc import Callable

import httpx
import pytest

from api.settings import Settings

SECRET = 'link-secret-for-conditional-reads-0123456789'
CONTENT = b'0123456789abcdefghij'
# an HTTP-date: no Last-Modified is ever sent, so a date never names the current version
A_DATE = 'Tue, 01 Dec 2026 10:00:00 GMT'


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(link_secret=SECRET)


async def _upload(
    client: httpx.AsyncClient, chat_id: str, content: bytes = CONTENT
) -> dict[str, str]:
    response = await client.put(f'/v1/chats/{chat_id}/files/by-name/f.bin', content=content)
    assert response.status_code in {200, 201}, response.text
    record: dict[str, str] = response.json()
    return record


async def _download_urls(
    client: httpx.AsyncClient, chat_id: str, record: dict[str, str]
) -> list[str]:
    """The file's `/content` and a signed link to it: both answer alike."""
    link = await client.post(
        f'/v1/chats/{chat_id}/files/{record["file_id"]}/link', json={'expires_in': 60}
    )
    assert link.status_code == 201, link.text
    return [f'/v1/chats/{chat_id}/files/{record["file_id"]}/content', link.json()['url']]


@pytest.mark.parametrize('if_range', ['"nope"', A_DATE, 'W/"{sha}"', '{sha}'])
async def test_a_range_under_an_if_range_of_another_version_is_the_whole_file(
    client: httpx.AsyncClient, chat_id: str, if_range: str
) -> None:
    record = await _upload(client, chat_id)
    for url in await _download_urls(client, chat_id, record):
        response = await client.get(
            url, headers={'Range': 'bytes=0-9', 'If-Range': if_range.format(sha=record['sha256'])}
        )
        assert response.status_code == 200, (url, if_range)
        assert response.content == CONTENT
        assert 'content-range' not in response.headers


async def test_a_range_under_an_if_range_of_the_current_version_is_partial(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    record = await _upload(client, chat_id)
    for url in await _download_urls(client, chat_id, record):
        response = await client.get(
            url, headers={'Range': 'bytes=0-9', 'If-Range': f'"{record["sha256"]}"'}
        )
        assert response.status_code == 206, url
        assert response.content == CONTENT[:10]
        assert response.headers['content-range'] == f'bytes 0-9/{len(CONTENT)}'


async def test_an_if_range_of_another_version_also_ignores_a_range_past_the_end(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    record = await _upload(client, chat_id)
    for url in await _download_urls(client, chat_id, record):
        response = await client.get(url, headers={'Range': 'bytes=500-', 'If-Range': '"nope"'})
        assert response.status_code == 200, url
        assert response.content == CONTENT


@pytest.mark.parametrize('if_match', ['"nope"', 'W/"{sha}"', '"nope", W/"{sha}"'])
async def test_a_download_under_an_if_match_of_another_version_is_412(
    client: httpx.AsyncClient, chat_id: str, if_match: str
) -> None:
    record = await _upload(client, chat_id)
    for url in await _download_urls(client, chat_id, record):
        response = await client.get(
            url, headers={'If-Match': if_match.format(sha=record['sha256'])}
        )
        assert response.status_code == 412, (url, if_match)
        assert response.headers['content-type'] == 'application/problem+json'
        problem = response.json()
        assert (problem['code'], problem['title']) == ('precondition_failed', 'Precondition failed')


@pytest.mark.parametrize('if_match', ['*', '"{sha}"', '"nope", "{sha}"'])
async def test_a_download_under_an_if_match_of_the_current_version_is_served(
    client: httpx.AsyncClient, chat_id: str, if_match: str
) -> None:
    record = await _upload(client, chat_id)
    for url in await _download_urls(client, chat_id, record):
        response = await client.get(
            url,
            headers={'If-Match': if_match.format(sha=record['sha256']), 'Range': 'bytes=-5'},
        )
        assert response.status_code == 206, (url, if_match)
        assert response.content == CONTENT[-5:]


async def test_if_match_is_checked_before_if_none_match_and_range(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    record = await _upload(client, chat_id)
    current = f'"{record["sha256"]}"'
    for url in await _download_urls(client, chat_id, record):
        response = await client.get(
            url, headers={'If-Match': '"nope"', 'If-None-Match': current, 'Range': 'bytes=99-'}
        )
        assert response.status_code == 412, url


async def test_a_history_read_under_an_if_match_of_another_version_is_412(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    written = await client.put(f'/v1/chats/{chat_id}/history', content=b'# hello\n')
    etag = written.headers['etag']
    url = f'/v1/chats/{chat_id}/history'
    for if_match in ('"nope"', f'W/{etag}', '"1-1"'):
        response = await client.get(url, headers={'If-Match': if_match})
        assert response.status_code == 412, if_match
        assert response.json()['code'] == 'precondition_failed'
    for if_match in ('*', etag, f'"nope", {etag}'):
        response = await client.get(url, headers={'If-Match': if_match})
        assert response.status_code == 200, if_match
        assert response.content == b'# hello\n'


# --- several lines of one field are one list (RFC 9110 5.3) -----------------------------------


async def test_a_second_if_none_match_line_counts(client: httpx.AsyncClient, chat_id: str) -> None:
    record = await _upload(client, chat_id)
    history = await client.put(f'/v1/chats/{chat_id}/history', content=b'# hello\n')
    cases = [
        (url, f'"{record["sha256"]}"') for url in await _download_urls(client, chat_id, record)
    ]
    cases.append((f'/v1/chats/{chat_id}/history', history.headers['etag']))
    for url, current in cases:
        response = await client.get(
            url, headers=[('If-None-Match', '"other"'), ('If-None-Match', current)]
        )
        assert response.status_code == 304, url


async def test_a_second_if_match_line_counts(client: httpx.AsyncClient, chat_id: str) -> None:
    record = await _upload(client, chat_id)
    url = f'/v1/chats/{chat_id}/history'
    etag = (await client.put(url, content=b'# hello\n')).headers['etag']
    for download in await _download_urls(client, chat_id, record):
        response = await client.get(
            download, headers=[('If-Match', '"other"'), ('If-Match', f'"{record["sha256"]}"')]
        )
        assert response.status_code == 200, download
    assert (
        await client.get(url, headers=[('If-Match', '"a"'), ('If-Match', etag)])
    ).status_code == 200
    written = await client.post(
        url, content=b'more\n', headers=[('If-Match', '"other"'), ('If-Match', etag)]
    )
    assert written.status_code == 200, written.text
    assert (await client.get(url)).content == b'# hello\nmore\n'
    refused = await client.put(
        url, content=b'x', headers=[('If-Match', '"other"'), ('If-Match', etag)]
    )
    assert refused.status_code == 412


# --- ranges of an empty file --------------------------------------------------------------------


async def test_a_suffix_range_of_an_empty_file_is_the_whole_empty_file(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    record = await _upload(client, chat_id, b'')
    for url in await _download_urls(client, chat_id, record):
        for method in ('GET', 'HEAD'):
            response = await client.request(method, url, headers={'Range': 'bytes=-5'})
            assert response.status_code == 200, (url, method)
            assert response.content == b''
            assert response.headers['content-length'] == '0'
            assert 'content-range' not in response.headers
        for unsatisfiable in ('bytes=-0', 'bytes=0-', 'bytes=0-0'):
            response = await client.get(url, headers={'Range': unsatisfiable})
            assert response.status_code == 416, (url, unsatisfiable)
            assert response.headers['content-range'] == 'bytes */0'
            assert response.json()['title'] == 'Range Not Satisfiable'  # RFC 9110's phrase
