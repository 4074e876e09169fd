import base64
import json

import httpx
import pytest


async def test_create_chat_returns_location_and_empty_history(
    client: httpx.AsyncClient,
) -> None:
    await client.put('/v1/workspace')
    response = await client.post('/v1/chats', json={'title': 'Plans'})
    assert response.status_code == 201
    chat = response.json()
    assert response.headers['location'] == f'/v1/chats/{chat["chat_id"]}'
    assert chat['title'] == 'Plans'
    assert chat['history_bytes'] == 0
    assert chat['file_count'] == 0
    assert chat['created_at'].endswith('Z')
    assert len(chat['created_at']) == len('2026-11-23T12:00:00.000000Z')


async def test_create_chat_accepts_an_empty_body(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    response = await client.post('/v1/chats')
    assert response.status_code == 201
    assert response.json()['title'] is None


async def test_create_chat_without_workspace_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post('/v1/chats', json={})
    assert response.status_code == 404
    assert response.json()['code'] == 'workspace_not_found'


async def test_title_over_200_chars_is_a_validation_error(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    response = await client.post('/v1/chats', json={'title': 'x' * 201})
    assert response.status_code == 422
    body = response.json()
    assert body['code'] == 'validation_error'
    assert body['errors'][0]['loc'][-1] == 'title'


async def test_bad_json_is_a_validation_error(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    response = await client.post(
        '/v1/chats', content=b'{"title": ', headers={'Content-Type': 'application/json'}
    )
    assert response.status_code == 422
    assert response.json()['code'] == 'validation_error'


async def test_bad_uuid_in_path_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.get('/v1/chats/not-a-uuid')
    assert response.status_code == 422
    body = response.json()
    assert body['code'] == 'validation_error'
    assert body['errors'][0]['loc'] == ['path', 'chat_id']


async def test_rename_chat(client: httpx.AsyncClient, chat_id: str) -> None:
    response = await client.patch(f'/v1/chats/{chat_id}', json={'title': 'renamed'})
    assert response.status_code == 200
    assert response.json()['title'] == 'renamed'
    assert (await client.get(f'/v1/chats/{chat_id}')).json()['title'] == 'renamed'


async def test_delete_chat_gives_back_its_bytes(client: httpx.AsyncClient, chat_id: str) -> None:
    await client.put(f'/v1/chats/{chat_id}/history', content=b'12345')
    await client.put(f'/v1/chats/{chat_id}/files/by-name/f.bin', content=b'123')
    assert (await client.delete(f'/v1/chats/{chat_id}')).status_code == 204
    assert (await client.get(f'/v1/chats/{chat_id}')).json()['code'] == 'chat_not_found'
    assert (await client.get('/v1/workspace/usage')).json()['used_bytes'] == 0


async def test_paging_returns_every_chat_once_in_order(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    created = [(await client.post('/v1/chats')).json()['chat_id'] for _ in range(11)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {'limit': 3}
        if cursor:
            params['cursor'] = cursor
        page = (await client.get('/v1/chats', params=params)).json()
        seen += [c['chat_id'] for c in page['items']]
        cursor = page['next_cursor']
        if cursor is None:
            break
    assert seen == created


async def test_paging_survives_deletes_between_pages(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    created = [(await client.post('/v1/chats')).json()['chat_id'] for _ in range(6)]
    first = (await client.get('/v1/chats', params={'limit': 3})).json()
    await client.delete(f'/v1/chats/{created[2]}')  # the last one already seen
    await client.delete(f'/v1/chats/{created[3]}')  # one not yet seen
    rest = (await client.get('/v1/chats', params={'cursor': first['next_cursor']})).json()
    assert [c['chat_id'] for c in rest['items']] == created[4:]


async def test_limit_out_of_range_is_a_validation_error(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    for limit in ('0', '201', 'many'):
        response = await client.get('/v1/chats', params={'limit': limit})
        assert response.status_code == 422
        assert response.json()['errors'][0]['loc'] == ['query', 'limit']


async def test_foreign_cursor_is_a_validation_error(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    for cursor in ('garbage', 'eyJhIjoxfQ', '!!!'):
        response = await client.get('/v1/chats', params={'cursor': cursor})
        assert response.status_code == 422
        assert response.json()['errors'][0]['loc'] == ['query', 'cursor']


async def test_a_hand_built_cursor_in_our_format_is_a_position(
    client: httpx.AsyncClient,
) -> None:
    """Cursors are not signed (docs/api-notes.md): one that decodes to a position of this
    list pages on from it."""
    await client.put('/v1/workspace')
    first = (await client.post('/v1/chats', json={'title': 'a'})).json()
    second = (await client.post('/v1/chats', json={'title': 'b'})).json()
    position = json.dumps(['chats', first['created_at'].replace('Z', '+00:00'), first['chat_id']])
    cursor = base64.urlsafe_b64encode(position.encode()).decode().rstrip('=')
    page = (await client.get('/v1/chats', params={'cursor': cursor})).json()
    assert [chat['chat_id'] for chat in page['items']] == [second['chat_id']]


async def test_other_users_chat_is_not_found(
    client: httpx.AsyncClient, chat_id: str, other_user: dict[str, str]
) -> None:
    await client.put('/v1/workspace', headers=other_user)
    theirs = await client.get(f'/v1/chats/{chat_id}', headers=other_user)
    missing = await client.get('/v1/chats/00000000-0000-4000-8000-000000000000')
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()['code'] == missing.json()['code'] == 'chat_not_found'
    deleted = await client.delete(f'/v1/chats/{chat_id}', headers=other_user)
    assert deleted.status_code == 404
    assert (await client.get(f'/v1/chats/{chat_id}')).status_code == 200


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get('/v1/nothing-here')
    assert response.status_code == 404
    assert response.headers['content-type'] == 'application/problem+json'
    assert response.json()['code'] == 'not_found'


async def test_identity_is_checked_before_the_path(client: httpx.AsyncClient) -> None:
    response = await client.get('/v1/chats/not-a-uuid', headers={'X-User-Id': ''})
    assert response.status_code == 401
    assert response.json()['code'] == 'unauthenticated'


async def test_an_empty_list_tells_no_workspace_from_no_more_chats(
    client: httpx.AsyncClient,
) -> None:
    # the page is read in one statement; an empty one is checked against the workspace
    missing = await client.get('/v1/chats')
    assert missing.status_code == 404
    assert missing.json()['code'] == 'workspace_not_found'
    await client.put('/v1/workspace')
    assert (await client.get('/v1/chats')).json() == {'items': [], 'next_cursor': None}
    await client.post('/v1/chats')
    first = (await client.get('/v1/chats', params={'limit': 1})).json()
    assert len(first['items']) == 1
    assert first['next_cursor'] is None


@pytest.mark.parametrize(
    'content_type',
    [None, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x'],
)
async def test_a_json_route_refuses_a_body_of_another_type_with_415(
    client: httpx.AsyncClient, chat_id: str, content_type: str | None
) -> None:
    """The contract's `unsupported_media_type`: a body that is not declared JSON (e.g.
    curl's `-d`, sent as a form) is refused whole, and changes nothing."""
    headers = {} if content_type is None else {'Content-Type': content_type}
    body = b'{"title": "x", "ttl_seconds": 60, "file_id": "00000000-0000-4000-8000-000000000000"}'
    refused = [
        await client.post('/v1/chats', content=body, headers=headers),
        await client.patch(f'/v1/chats/{chat_id}', content=body, headers=headers),
        await client.put(f'/v1/chats/{chat_id}/sandbox', content=body, headers=headers),
    ]
    assert [(r.status_code, r.json()['code']) for r in refused] == [
        (415, 'unsupported_media_type')
    ] * 3
    assert all(r.headers['content-type'] == 'application/problem+json' for r in refused)
    chats = (await client.get('/v1/chats')).json()['items']
    assert [(chat['chat_id'], chat['title']) for chat in chats] == [(chat_id, 'first')]
    assert (await client.get(f'/v1/chats/{chat_id}/sandbox')).status_code == 404


@pytest.mark.parametrize(
    'content_type', ['application/json', 'application/json; charset=utf-8', 'text/plain']
)
async def test_a_json_route_takes_json_and_needs_no_type_for_an_empty_body(
    client: httpx.AsyncClient, chat_id: str, content_type: str
) -> None:
    assert chat_id  # the caller's workspace exists
    empty = await client.post('/v1/chats', content=b'', headers={'Content-Type': content_type})
    assert empty.status_code == 201
    if content_type.startswith('application/json'):
        named = await client.post(
            '/v1/chats', content=b'{"title": "t"}', headers={'Content-Type': content_type}
        )
        assert (named.status_code, named.json()['title']) == (201, 't')


async def test_every_validation_error_has_the_same_title(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    """RFC 9457: a problem type's title does not change from one occurrence to the next,
    whether pydantic (a bad `limit`) or our own checks (a cursor we did not make) refused."""
    refused = [
        await client.get('/v1/chats', params={'limit': 0}),
        await client.get('/v1/chats', params={'cursor': 'not-ours'}),
        await client.get(f'/v1/chats/{chat_id}/files', params={'cursor': '!'}),
    ]
    assert {(r.status_code, r.json()['code'], r.json()['title']) for r in refused} == {
        (422, 'validation_error', 'Validation error')
    }


async def test_a_cursor_of_another_list_is_a_validation_error(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    """A position in one list would skip or repeat items of another: refused, not used."""
    other = (await client.post('/v1/chats', json={})).json()['chat_id']
    for chat in (chat_id, other):
        for name in ('a', 'b'):
            await client.put(f'/v1/chats/{chat}/files/by-name/{name}', content=b'x')
    await client.post('/v1/chats', json={})
    chats_cursor = (await client.get('/v1/chats', params={'limit': 1})).json()['next_cursor']
    files = await client.get(f'/v1/chats/{chat_id}/files', params={'limit': 1})
    files_cursor = files.json()['next_cursor']
    assert chats_cursor
    assert files_cursor
    refused = [
        await client.get('/v1/chats', params={'cursor': files_cursor}),
        await client.get(f'/v1/chats/{chat_id}/files', params={'cursor': chats_cursor}),
        await client.get(f'/v1/chats/{other}/files', params={'cursor': files_cursor}),
    ]
    assert [(r.status_code, r.json()['errors'][0]['loc']) for r in refused] == [
        (422, ['query', 'cursor'])
    ] * 3
    rest = await client.get(f'/v1/chats/{chat_id}/files', params={'cursor': files_cursor})
    assert [item['name'] for item in rest.json()['items']] == ['b']


async def test_a_title_with_a_nul_is_a_validation_error_on_every_backend(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    """PostgreSQL cannot store a NUL in text (it answered 500); SQLite could: both refuse."""
    refused = [
        await client.post('/v1/chats', json={'title': 'a\x00b'}),
        await client.patch(f'/v1/chats/{chat_id}', json={'title': '\x00'}),
    ]
    assert [(r.status_code, r.json()['code']) for r in refused] == [(422, 'validation_error')] * 2
    chats = (await client.get('/v1/chats')).json()['items']
    assert [(chat['chat_id'], chat['title']) for chat in chats] == [(chat_id, 'first')]
