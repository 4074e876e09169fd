import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import httpx
import pytest
from data_layout import blob_area, chat_dir, staging_entries


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_raw_upload_creates_then_replaces(client: httpx.AsyncClient, chat_id: str) -> None:
    first = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/notes.txt',
        content=b'v1',
        headers={'Content-Type': 'text/plain'},
    )
    assert first.status_code == 201
    record = first.json()
    assert record['name'] == 'notes.txt'
    assert record['content_type'] == 'text/plain'
    assert record['sha256'] == hashlib.sha256(b'v1').hexdigest()
    assert first.headers['location'] == f'/v1/chats/{chat_id}/files/{record["file_id"]}'
    second = await client.put(f'/v1/chats/{chat_id}/files/by-name/notes.txt', content=b'v2!')
    assert second.status_code == 200
    assert second.json()['file_id'] != record['file_id']
    old = await client.get(f'/v1/chats/{chat_id}/files/{record["file_id"]}')
    assert old.json()['code'] == 'chat_file_not_found'
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 3
    assert (await client.get(f'/v1/chats/{chat_id}')).json()['file_count'] == 1


async def test_multipart_upload_uses_the_part_filename(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    response = await client.post(
        f'/v1/chats/{chat_id}/files',
        files={'file': ('résumé.pdf', b'%PDF-1.7', 'application/pdf')},
    )
    assert response.status_code == 201
    assert response.json()['name'] == 'résumé.pdf'
    assert response.json()['content_type'] == 'application/pdf'
    assert (chat_dir(data_dir) / 'résumé.pdf').read_bytes() == b'%PDF-1.7'


async def test_a_multipart_upload_that_replaces_a_file_is_201_too(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    """The contract: the multipart route answers `201 ChatFile` with `Location`; only the
    raw `PUT` answers `200` when it replaced a file."""
    first = await client.post(f'/v1/chats/{chat_id}/files', files={'file': ('a.txt', b'one')})
    second = await client.post(f'/v1/chats/{chat_id}/files', files={'file': ('a.txt', b'two')})
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()['file_id'] != first.json()['file_id']
    assert second.headers['location'].endswith(second.json()['file_id'])
    listed = (await client.get(f'/v1/chats/{chat_id}/files')).json()['items']
    assert [(item['name'], item['size_bytes']) for item in listed] == [('a.txt', 3)]
    raw = await client.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'three')
    assert raw.status_code == 200


async def test_multipart_name_field_overrides_the_filename(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    response = await client.post(
        f'/v1/chats/{chat_id}/files',
        data={'name': 'chosen.txt'},
        files={'file': ('original.txt', b'data')},
    )
    assert response.status_code == 201
    assert response.json()['name'] == 'chosen.txt'


async def test_non_multipart_body_is_415(client: httpx.AsyncClient, chat_id: str) -> None:
    response = await client.post(f'/v1/chats/{chat_id}/files', json={'file': 'x'})
    assert response.status_code == 415
    assert response.json()['code'] == 'unsupported_media_type'


async def test_multipart_without_file_part_is_422(client: httpx.AsyncClient, chat_id: str) -> None:
    response = await client.post(
        f'/v1/chats/{chat_id}/files', data={'name': 'x'}, files={'other': ('a', b'b')}
    )
    assert response.status_code == 422
    assert response.json()['code'] == 'validation_error'


async def test_truncated_multipart_leaves_nothing(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    body = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="t.bin"\r\n\r\npartial'
    blobs_before = blob_area(data_dir)
    response = await client.post(
        f'/v1/chats/{chat_id}/files',
        content=body,
        headers={'Content-Type': 'multipart/form-data; boundary=XyZ'},
    )
    assert response.status_code == 422
    assert sorted(p.name for p in chat_dir(data_dir).iterdir()) == ['history.md']
    assert blob_area(data_dir) == blobs_before
    assert staging_entries(data_dir) == set()


async def test_bad_names_are_refused_and_leave_nothing(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    cases = {
        '%2E%2E': 'invalid_attachment_name',
        '%2E': 'invalid_attachment_name',
        'a%2Fb': 'invalid_attachment_name',
        'a%5Cb': 'invalid_attachment_name',
        'x' * 256: 'invalid_attachment_name',
        'bad%01name': 'invalid_attachment_name',
        'history.md': 'reserved_attachment_name',
    }
    blobs_before = blob_area(data_dir)
    for name, code in cases.items():
        response = await client.put(f'/v1/chats/{chat_id}/files/by-name/{name}', content=b'data')
        assert response.status_code == 422, name
        assert response.json()['code'] == code, name
    nul = await client.post(
        f'/v1/chats/{chat_id}/files', data={'name': 'a\x00b'}, files={'file': ('f', b'data')}
    )
    assert nul.json()['code'] == 'invalid_attachment_name'
    assert sorted(p.name for p in chat_dir(data_dir).iterdir()) == ['history.md']
    assert blob_area(data_dir) == blobs_before
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 0


async def test_name_of_255_utf8_bytes_is_accepted(client: httpx.AsyncClient, chat_id: str) -> None:
    name = 'é' * 127 + 'x'  # 255 bytes
    response = await client.put(f'/v1/chats/{chat_id}/files/by-name/{name}', content=b'1')
    assert response.status_code == 201


async def test_too_large_streamed_upload_keeps_the_old_file(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    url = f'/v1/chats/{chat_id}/files/by-name/keep.bin'
    await client.put(url, content=b'old content')
    blobs_before = blob_area(data_dir)
    response = await client.put(url, content=chunks(b'x' * 3_000, b'x' * 3_000))
    assert response.status_code == 413
    assert response.json()['code'] == 'file_too_large'
    assert (chat_dir(data_dir) / 'keep.bin').read_bytes() == b'old content'
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == len(b'old content')
    assert blob_area(data_dir) == blobs_before
    assert staging_entries(data_dir) == set()


async def test_upload_over_quota_is_refused(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    for index in range(3):
        await client.put(f'/v1/chats/{chat_id}/files/by-name/f{index}', content=b'x' * 3_000)
    blobs_before = blob_area(data_dir)
    response = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/f3', content=chunks(b'y' * 1_500, b'y' * 1_500)
    )
    assert response.status_code == 413
    assert response.json()['code'] == 'workspace_quota_exceeded'
    assert sorted(p.name for p in chat_dir(data_dir).iterdir()) == ['f0', 'f1', 'f2', 'history.md']
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 9_000
    assert blob_area(data_dir) == blobs_before


async def test_replacement_is_charged_only_the_difference(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    for index in range(3):
        await client.put(f'/v1/chats/{chat_id}/files/by-name/f{index}', content=b'x' * 3_000)
    response = await client.put(f'/v1/chats/{chat_id}/files/by-name/f0', content=b'z' * 3_500)
    assert response.status_code == 200
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 9_500


async def test_download_headers(client: httpx.AsyncClient, chat_id: str) -> None:
    content = b'0123456789'
    record = (
        await client.put(f'/v1/chats/{chat_id}/files/by-name/my file.txt', content=content)
    ).json()
    response = await client.get(f'/v1/chats/{chat_id}/files/{record["file_id"]}/content')
    assert response.status_code == 200
    assert response.content == content
    assert response.headers['content-type'] == 'application/octet-stream'
    assert response.headers['content-length'] == '10'
    assert response.headers['etag'] == f'"{record["sha256"]}"'
    assert response.headers['accept-ranges'] == 'bytes'
    assert response.headers['x-content-type-options'] == 'nosniff'
    assert "filename*=UTF-8''my%20file.txt" in response.headers['content-disposition']
    assert response.headers['content-disposition'].startswith('attachment;')


async def test_ranges(client: httpx.AsyncClient, chat_id: str) -> None:
    record = (
        await client.put(f'/v1/chats/{chat_id}/files/by-name/r.bin', content=b'0123456789')
    ).json()
    url = f'/v1/chats/{chat_id}/files/{record["file_id"]}/content'
    cases = {'bytes=2-4': b'234', 'bytes=7-': b'789', 'bytes=-3': b'789', 'bytes=8-100': b'89'}
    for header, expected in cases.items():
        response = await client.get(url, headers={'Range': header})
        assert response.status_code == 206, header
        assert response.content == expected, header
    partial = await client.get(url, headers={'Range': 'bytes=2-4'})
    assert partial.headers['content-range'] == 'bytes 2-4/10'
    outside = await client.get(url, headers={'Range': 'bytes=10-'})
    assert outside.status_code == 416
    assert outside.json()['code'] == 'range_not_satisfiable'
    assert outside.headers['content-range'] == 'bytes */10'


async def test_if_none_match_on_content_is_304(client: httpx.AsyncClient, chat_id: str) -> None:
    record = (await client.put(f'/v1/chats/{chat_id}/files/by-name/c', content=b'c')).json()
    response = await client.get(
        f'/v1/chats/{chat_id}/files/{record["file_id"]}/content',
        headers={'If-None-Match': f'"{record["sha256"]}"'},
    )
    assert response.status_code == 304


async def test_list_delete_and_clear(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    ids = [
        (await client.put(f'/v1/chats/{chat_id}/files/by-name/f{i}', content=b'12')).json()[
            'file_id'
        ]
        for i in range(3)
    ]
    listed = (await client.get(f'/v1/chats/{chat_id}/files', params={'limit': 2})).json()
    assert [f['file_id'] for f in listed['items']] == ids[:2]
    assert listed['next_cursor'] is not None
    assert (await client.delete(f'/v1/chats/{chat_id}/files/{ids[0]}')).status_code == 204
    assert (await client.get(f'/v1/chats/{chat_id}')).json()['file_count'] == 2
    await client.put(f'/v1/chats/{chat_id}/history', content=b'keep')
    assert (await client.delete(f'/v1/chats/{chat_id}/files')).status_code == 204
    assert sorted(p.name for p in chat_dir(data_dir).iterdir()) == ['history.md']
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 4
    assert (await client.get(f'/v1/chats/{chat_id}/files')).json()['items'] == []


async def test_file_of_another_chat_is_not_found(client: httpx.AsyncClient, chat_id: str) -> None:
    record = (await client.put(f'/v1/chats/{chat_id}/files/by-name/f', content=b'1')).json()
    other_chat = (await client.post('/v1/chats')).json()['chat_id']
    response = await client.get(f'/v1/chats/{other_chat}/files/{record["file_id"]}')
    assert response.status_code == 404
    assert response.json()['code'] == 'chat_file_not_found'


async def test_an_empty_file_list_tells_a_missing_or_foreign_chat_from_an_empty_one(
    client: httpx.AsyncClient, chat_id: str, other_user: dict[str, str]
) -> None:
    # the page is read in one statement; an empty one is checked against the chat
    assert (await client.get(f'/v1/chats/{chat_id}/files')).json() == {
        'items': [],
        'next_cursor': None,
    }
    missing = await client.get(f'/v1/chats/{uuid4()}/files')
    assert missing.status_code == 404
    assert missing.json()['code'] == 'chat_not_found'
    await client.put('/v1/workspace', headers=other_user)
    foreign = await client.get(f'/v1/chats/{chat_id}/files', headers=other_user)
    assert foreign.status_code == 404
    assert foreign.json()['code'] == 'chat_not_found'


def _multipart(parts: list[tuple[bytes, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A form written byte for byte: (part headers, content) pairs."""
    body = b''.join(b'--B\r\n' + head + b'\r\n\r\n' + data + b'\r\n' for head, data in parts)
    return body + b'--B--\r\n', {'Content-Type': 'multipart/form-data; boundary=B'}


async def _nothing_stored(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path, blobs_before: set[str]
) -> None:
    assert (await client.get(f'/v1/chats/{chat_id}/files')).json()['items'] == []
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 0
    assert list(chat_dir(data_dir).iterdir()) == [chat_dir(data_dir) / 'history.md']
    assert blob_area(data_dir) == blobs_before
    assert staging_entries(data_dir) == set()


async def test_a_stored_content_type_is_one_a_download_can_send(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    """It comes back as a header on every download: a control character (which made
    Granian answer a plain 500 to every download) or an unbounded length is refused."""
    blobs_before = blob_area(data_dir)
    refused = []
    for content_type in (b'text/plain\x01', b'text/plain\x00', b'text/\x7fplain'):
        body, headers = _multipart(
            [(b'Content-Disposition: form-data; name="file"; filename="a"\r\n'
              b'Content-Type: ' + content_type, b'x')]
        )  # fmt: skip
        refused.append(
            await client.post(f'/v1/chats/{chat_id}/files', content=body, headers=headers)
        )
    refused.append(
        await client.put(
            f'/v1/chats/{chat_id}/files/by-name/a',
            content=b'x',
            headers={'Content-Type': 'text/plain; x=' + 'y' * 300},
        )
    )
    assert [(r.status_code, r.json()['code']) for r in refused] == [(422, 'validation_error')] * 4
    assert refused[-1].json()['errors'][0]['loc'] == ['header', 'content-type']
    await _nothing_stored(client, chat_id, data_dir, blobs_before)
    tab = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/a', content=b'x', headers={'Content-Type': 'a/b;\tc=d'}
    )
    assert (tab.status_code, tab.json()['content_type']) == (201, 'a/b;\tc=d')


async def test_a_content_type_that_is_not_ascii_is_refused_not_garbled(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    """A header's bytes reach the app as Latin-1: `é` in UTF-8 would be stored as `Ã©`."""
    blobs_before = blob_area(data_dir)
    content_type = 'text/plain; title="résumé"'.encode()
    raw = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/a',
        content=b'x',
        headers=[(b'Content-Type', content_type)],
    )
    body, headers = _multipart(
        [(b'Content-Disposition: form-data; name="file"; filename="a"\r\n'
          b'Content-Type: ' + content_type, b'x')]
    )  # fmt: skip
    multipart = await client.post(f'/v1/chats/{chat_id}/files', content=body, headers=headers)
    assert [(r.status_code, r.json()['code']) for r in (raw, multipart)] == [
        (422, 'validation_error')
    ] * 2
    assert raw.json()['errors'][0]['loc'] == ['header', 'content-type']
    assert multipart.json()['errors'][0]['loc'] == ['body', 'file']
    await _nothing_stored(client, chat_id, data_dir, blobs_before)


async def test_a_name_that_is_not_utf8_is_refused_not_replaced(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    """Decoded with U+FFFD, the names %FF and %FE would be one name, and the second upload
    would replace the first."""
    blobs_before = blob_area(data_dir)
    refused = [
        await client.put(f'/v1/chats/{chat_id}/files/by-name/%FF', content=b'x'),
        await client.put(f'/v1/chats/{chat_id}/files/by-name/a%ED%A0%80', content=b'x'),
    ]
    for head in (
        b'Content-Disposition: form-data; name="file"; filename="\xff"',
        b'Content-Disposition: form-data; name="file"; filename="b\xfe.txt"',
        b'Content-Disposition: form-data; name="file"; filename*=UTF-8\'\'%FFa.txt',
        # an empty or unknown charset is UTF-8 (email's fallback would be latin-1)
        b'Content-Disposition: form-data; name="file"; filename*=\'\'%FF.txt',
        b'Content-Disposition: form-data; name="file"; filename*=x-unknown\'\'%E9.txt',
    ):
        body, headers = _multipart([(head, b'x')])
        refused.append(
            await client.post(f'/v1/chats/{chat_id}/files', content=body, headers=headers)
        )
    body, headers = _multipart(
        [(b'Content-Disposition: form-data; name="name"', b'\xfe'),
         (b'Content-Disposition: form-data; name="file"; filename="ok"', b'x')]
    )  # fmt: skip
    refused.append(await client.post(f'/v1/chats/{chat_id}/files', content=body, headers=headers))
    assert [(r.status_code, r.json()['code']) for r in refused] == [
        (422, 'invalid_attachment_name')
    ] * 8
    await _nothing_stored(client, chat_id, data_dir, blobs_before)
    named = await client.put(f'/v1/chats/{chat_id}/files/by-name/%EF%BF%BD', content=b'x')
    assert (named.status_code, named.json()['name']) == (201, '\ufffd')


@pytest.mark.parametrize(
    'filename',
    [
        'voilà',
        'Å',
        'Отчёт Р',  # noqa: RUF001 - a Cyrillic ER, whose UTF-8 ends in 0xA0
        'データ',
        'résumé 👋.pdf',
        ' padded.txt ',
    ],
)
async def test_a_utf8_filename_is_stored_as_sent(
    client: httpx.AsyncClient, chat_id: str, filename: str
) -> None:
    """As a browser sends it: the UTF-8 bytes in the part's quoted `filename`, whatever
    their last byte (0xA0 and 0x85 are spaces in latin-1), and as RFC 2231 `filename*`."""
    quoted = b'Content-Disposition: form-data; name="file"; filename="%s"' % filename.encode()
    disposition = b'Content-Disposition: form-data; name="file"; filename*='
    encoded = [
        disposition + charset + b"''" + quote(filename).encode() for charset in (b'UTF-8', b'')
    ]
    for head in (quoted, *encoded):
        body, headers = _multipart([(head, b'x')])
        response = await client.post(f'/v1/chats/{chat_id}/files', content=body, headers=headers)
        assert (response.status_code, response.json()['name']) == (201, filename.strip())


async def test_a_second_name_field_is_refused(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    blobs_before = blob_area(data_dir)
    body, headers = _multipart(
        [(b'Content-Disposition: form-data; name="name"', b'ab'),
         (b'Content-Disposition: form-data; name="name"', b'cd'),
         (b'Content-Disposition: form-data; name="file"; filename="f"', b'x')]
    )  # fmt: skip
    response = await client.post(f'/v1/chats/{chat_id}/files', content=body, headers=headers)
    assert (response.status_code, response.json()['code']) == (422, 'validation_error')
    assert response.json()['errors'][0]['loc'] == ['body', 'name']
    await _nothing_stored(client, chat_id, data_dir, blobs_before)
