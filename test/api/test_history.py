from pathlib import Path

import httpx
from data_layout import blob_area, blob_name, staging_entries


async def test_new_history_is_empty_with_an_etag(client: httpx.AsyncClient, chat_id: str) -> None:
    response = await client.get(f'/v1/chats/{chat_id}/history')
    assert response.status_code == 200
    assert response.content == b''
    assert response.headers['content-type'] == 'text/markdown; charset=utf-8'
    assert response.headers['etag'].startswith('"')


async def test_put_then_get_history(client: httpx.AsyncClient, chat_id: str) -> None:
    text = '# Chat\n\nhéllo 👋\n'.encode()
    written = await client.put(f'/v1/chats/{chat_id}/history', content=text)
    assert written.status_code == 200
    assert written.json() == {'etag': written.headers['etag'], 'size_bytes': len(text)}
    read = await client.get(f'/v1/chats/{chat_id}/history')
    assert read.content == text
    assert read.headers['etag'] == written.headers['etag']
    chat = (await client.get(f'/v1/chats/{chat_id}')).json()
    assert chat['history_bytes'] == len(text)


async def test_if_none_match_gives_304(client: httpx.AsyncClient, chat_id: str) -> None:
    etag = (await client.put(f'/v1/chats/{chat_id}/history', content=b'x')).headers['etag']
    response = await client.get(f'/v1/chats/{chat_id}/history', headers={'If-None-Match': etag})
    assert response.status_code == 304
    assert response.content == b''


async def test_if_match_mismatch_is_412_and_changes_nothing(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    first = await client.put(f'/v1/chats/{chat_id}/history', content=b'one')
    await client.put(f'/v1/chats/{chat_id}/history', content=b'two')
    stale = await client.put(
        f'/v1/chats/{chat_id}/history',
        content=b'three',
        headers={'If-Match': first.headers['etag']},
    )
    assert stale.status_code == 412
    assert stale.json()['code'] == 'precondition_failed'
    assert (await client.get(f'/v1/chats/{chat_id}/history')).content == b'two'


async def test_if_match_current_etag_applies(client: httpx.AsyncClient, chat_id: str) -> None:
    etag = (await client.put(f'/v1/chats/{chat_id}/history', content=b'one')).headers['etag']
    response = await client.post(
        f'/v1/chats/{chat_id}/history', content=b'+two', headers={'If-Match': etag}
    )
    assert response.status_code == 200
    assert (await client.get(f'/v1/chats/{chat_id}/history')).content == b'one+two'


async def test_append_adds_to_the_end_and_counts_usage(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    await client.post(f'/v1/chats/{chat_id}/history', content=b'a\n')
    response = await client.post(f'/v1/chats/{chat_id}/history', content=b'b\n')
    assert response.json()['size_bytes'] == 4
    assert (await client.get(f'/v1/chats/{chat_id}/history')).content == b'a\nb\n'
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 4


async def test_invalid_utf8_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    await client.put(f'/v1/chats/{chat_id}/history', content=b'ok')
    for method in ('PUT', 'POST'):
        response = await client.request(
            method, f'/v1/chats/{chat_id}/history', content=b'bad \xff\xfe'
        )
        assert response.status_code == 422
        assert response.json()['code'] == 'invalid_history_encoding'
    assert (await client.get(f'/v1/chats/{chat_id}/history')).content == b'ok'
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 2


async def test_history_over_quota_is_413(client: httpx.AsyncClient, chat_id: str) -> None:
    await client.put(f'/v1/chats/{chat_id}/files/by-name/big', content=b'x' * 3_999)
    await client.put(f'/v1/chats/{chat_id}/files/by-name/big2', content=b'x' * 3_999)
    response = await client.post(f'/v1/chats/{chat_id}/history', content=b'y' * 2_100)
    assert response.status_code == 413
    assert response.json()['code'] == 'workspace_quota_exceeded'
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 7_998


async def test_history_of_another_users_chat_is_not_found(
    client: httpx.AsyncClient, chat_id: str, other_user: dict[str, str]
) -> None:
    await client.put('/v1/workspace', headers=other_user)
    response = await client.put(
        f'/v1/chats/{chat_id}/history', content=b'mine now', headers=other_user
    )
    assert response.status_code == 404
    assert response.json()['code'] == 'chat_not_found'
    assert (await client.get(f'/v1/chats/{chat_id}/history')).content == b''


async def test_a_refused_small_append_leaves_nothing_behind(
    client: httpx.AsyncClient, chat_id: str, other_user: dict[str, str], data_dir: Path
) -> None:
    """An append of at most 16 KiB is read before it is checked (docs/api-notes.md): each
    refusal comes after its body was read, and must still leave no trace."""
    blobs_before = blob_area(data_dir)
    etag = (await client.post(f'/v1/chats/{chat_id}/history', content=b'a\n')).headers['etag']
    await client.put('/v1/workspace', headers=other_user)
    missing = '00000000-0000-4000-8000-000000000000'
    refused = [
        (await client.post(f'/v1/chats/{chat_id}/history', content=b'b', headers=other_user)),
        (await client.post(f'/v1/chats/{missing}/history', content=b'c')),
        # the body's own error answers first: it is read before the chat is looked up
        (await client.post(f'/v1/chats/{missing}/history', content=b'\xff')),
        (await client.post(f'/v1/chats/{chat_id}/history', content=b'\xff')),
    ]
    await client.post(f'/v1/chats/{chat_id}/history', content=b'z')
    refused.append(
        await client.post(f'/v1/chats/{chat_id}/history', content=b'd', headers={'If-Match': etag})
    )
    refused.append(await client.post(f'/v1/chats/{missing}/history', content=b'e' * 4_001))
    stored = [
        await client.put(f'/v1/chats/{chat_id}/files/by-name/{name}', content=b'x' * 3_999)
        for name in ('big', 'big2')
    ]
    refused.append(await client.post(f'/v1/chats/{chat_id}/history', content=b'f' * 2_100))
    assert [(r.status_code, r.json()['code']) for r in refused] == [
        (404, 'chat_not_found'),
        (404, 'chat_not_found'),
        (422, 'invalid_history_encoding'),
        (422, 'invalid_history_encoding'),
        (412, 'precondition_failed'),
        (413, 'file_too_large'),
        (413, 'workspace_quota_exceeded'),
    ]
    assert (await client.get(f'/v1/chats/{chat_id}/history')).content == b'a\nz'
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 3 + 7_998
    # small appends are rows: the only blobs written are the two uploads'
    uploads = {blob_name(s.json()['file_id']) for s in stored}
    assert blob_area(data_dir) == blobs_before | uploads
    assert staging_entries(data_dir) == set()
