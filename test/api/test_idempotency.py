"""`Idempotency-Key` on the create routes, in-process on every metadata backend."""

import asyncio
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from data_layout import blob_area, staging_entries


class StepClock(Protocol):
    """The `clock` fixture of conftest.py, which the app reads."""

    def advance(self, seconds: float) -> None: ...


KEY = {'Idempotency-Key': 'order-42'}


def problem_code(response: httpx.Response) -> str:
    assert response.headers['content-type'] == 'application/problem+json'
    return str(response.json()['code'])


async def chat_count(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> int:
    response = await client.get('/v1/chats', params={'limit': 200}, headers=headers)
    return len(response.json()['items'])


async def files_of(client: httpx.AsyncClient, chat_id: str) -> list[dict[str, object]]:
    response = await client.get(f'/v1/chats/{chat_id}/files', params={'limit': 200})
    items: list[dict[str, object]] = response.json()['items']
    return items


async def used_bytes(client: httpx.AsyncClient) -> int:
    return int((await client.get('/v1/workspace/usage')).json()['used_bytes'])


def same_answer(first: httpx.Response, again: httpx.Response) -> None:
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again.headers['location'] == first.headers['location']
    assert again.headers['content-type'] == first.headers['content-type'] == 'application/json'


@pytest.fixture
async def workspace(client: httpx.AsyncClient) -> None:
    assert (await client.put('/v1/workspace')).status_code == 201


@pytest.mark.usefixtures('workspace')
async def test_create_chat_retry_returns_the_first_answer(client: httpx.AsyncClient) -> None:
    first = await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    assert first.status_code == 201
    assert first.headers['location'] == f'/v1/chats/{first.json()["chat_id"]}'
    again = await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    same_answer(first, again)
    assert await chat_count(client) == 1


@pytest.mark.usefixtures('workspace')
async def test_create_chat_compares_json_by_meaning(client: httpx.AsyncClient) -> None:
    headers = KEY | {'Content-Type': 'application/json'}
    first = await client.post('/v1/chats', content=b'{"title":"plan"}', headers=headers)
    again = await client.post('/v1/chats', content=b'{ "title" : "plan" }', headers=headers)
    same_answer(first, again)
    assert await chat_count(client) == 1


@pytest.mark.usefixtures('workspace')
async def test_create_chat_empty_body_is_the_same_as_no_title(client: httpx.AsyncClient) -> None:
    first = await client.post('/v1/chats', headers=KEY)
    same_answer(first, await client.post('/v1/chats', json={}, headers=KEY))
    same_answer(first, await client.post('/v1/chats', json={'title': None}, headers=KEY))
    assert await chat_count(client) == 1


@pytest.mark.usefixtures('workspace')
async def test_replay_keeps_the_first_answer_after_a_rename(client: httpx.AsyncClient) -> None:
    first = await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    chat_id = first.json()['chat_id']
    await client.patch(f'/v1/chats/{chat_id}', json={'title': 'renamed'})
    again = await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    same_answer(first, again)
    assert again.json()['title'] == 'plan'


@pytest.mark.usefixtures('workspace')
async def test_same_key_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    response = await client.post('/v1/chats', json={'title': 'other'}, headers=KEY)
    assert response.status_code == 422
    assert problem_code(response) == 'idempotency_key_reused'
    assert await chat_count(client) == 1


async def test_same_key_on_another_route_is_422(client: httpx.AsyncClient, chat_id: str) -> None:
    await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    used = await used_bytes(client)
    response = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'data', headers=KEY
    )
    assert response.status_code == 422
    assert problem_code(response) == 'idempotency_key_reused'
    assert await files_of(client, chat_id) == []
    assert await used_bytes(client) == used


async def test_same_key_for_another_name_is_422(client: httpx.AsyncClient, chat_id: str) -> None:
    url = f'/v1/chats/{chat_id}/files/by-name'
    assert (await client.put(f'{url}/a.txt', content=b'data', headers=KEY)).status_code == 201
    response = await client.put(f'{url}/b.txt', content=b'data', headers=KEY)
    assert problem_code(response) == 'idempotency_key_reused'
    assert [f['name'] for f in await files_of(client, chat_id)] == ['a.txt']


async def test_same_key_with_another_content_type_is_422(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/files/by-name/a.txt'
    await client.put(url, content=b'data', headers=KEY | {'Content-Type': 'text/plain'})
    response = await client.put(url, content=b'data', headers=KEY | {'Content-Type': 'text/csv'})
    assert problem_code(response) == 'idempotency_key_reused'


async def test_raw_upload_retry_returns_the_first_answer_and_stores_once(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    url = f'/v1/chats/{chat_id}/files/by-name/notes.txt'
    headers = KEY | {'Content-Type': 'text/plain'}
    first = await client.put(url, content=b'version 1', headers=headers)
    assert first.status_code == 201
    used = await used_bytes(client)
    blobs = blob_area(data_dir)
    again = await client.put(url, content=b'version 1', headers=headers)
    same_answer(first, again)
    files = await files_of(client, chat_id)
    assert [f['file_id'] for f in files] == [first.json()['file_id']]
    assert await used_bytes(client) == used
    assert blob_area(data_dir) == blobs
    assert staging_entries(data_dir) == set()


async def test_raw_upload_retry_with_other_bytes_is_422_and_leaves_no_trace(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    url = f'/v1/chats/{chat_id}/files/by-name/notes.txt'
    await client.put(url, content=b'version 1', headers=KEY)
    used = await used_bytes(client)
    blobs = blob_area(data_dir)
    response = await client.put(url, content=b'version 2', headers=KEY)
    assert problem_code(response) == 'idempotency_key_reused'
    assert await used_bytes(client) == used
    [chat_dir] = (data_dir / 'workspaces').glob(f'*/chats/{chat_id}')
    assert (chat_dir / 'notes.txt').read_bytes() == b'version 1'
    assert blob_area(data_dir) == blobs
    assert staging_entries(data_dir) == set()


async def test_replacing_upload_retry_replays_200_without_replacing_again(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/files/by-name/notes.txt'
    await client.put(url, content=b'old')
    first = await client.put(url, content=b'new', headers=KEY)
    assert first.status_code == 200
    again = await client.put(url, content=b'new', headers=KEY)
    same_answer(first, again)
    assert [f['file_id'] for f in await files_of(client, chat_id)] == [first.json()['file_id']]


async def test_multipart_retry_returns_the_first_answer(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/files'
    part = {'file': ('report.pdf', b'%PDF-1.7 body', 'application/pdf')}
    first = await client.post(url, files=part, headers=KEY)
    assert first.status_code == 201
    used = await used_bytes(client)
    again = await client.post(url, files=part, headers=KEY)
    same_answer(first, again)
    assert len(await files_of(client, chat_id)) == 1
    assert await used_bytes(client) == used
    other = {'file': ('report.pdf', b'%PDF-1.7 other', 'application/pdf')}
    assert problem_code(await client.post(url, files=other, headers=KEY)) == (
        'idempotency_key_reused'
    )
    renamed = await client.post(url, data={'name': 'r.pdf'}, files=part, headers=KEY)
    assert problem_code(renamed) == 'idempotency_key_reused'
    assert len(await files_of(client, chat_id)) == 1


async def history_of(client: httpx.AsyncClient, chat_id: str) -> bytes:
    return (await client.get(f'/v1/chats/{chat_id}/history')).content


def same_history_answer(first: httpx.Response, again: httpx.Response) -> None:
    assert first.status_code == 200
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers['etag'] == first.headers['etag'] == first.json()['etag']


async def test_append_retry_returns_the_first_answer_and_appends_once(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    first = await client.post(url, content=b'# step 1\n', headers=KEY)
    used = await used_bytes(client)
    blobs = blob_area(data_dir)
    same_history_answer(first, await client.post(url, content=b'# step 1\n', headers=KEY))
    assert await history_of(client, chat_id) == b'# step 1\n'
    assert await used_bytes(client) == used == len(b'# step 1\n')
    assert blob_area(data_dir) == blobs
    assert staging_entries(data_dir) == set()


async def test_concurrent_appends_with_one_key_append_once(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    answers = await asyncio.gather(
        *(client.post(url, content=b'# once\n', headers=KEY) for _ in range(8))
    )
    for again in answers[1:]:
        same_history_answer(answers[0], again)
    assert await history_of(client, chat_id) == b'# once\n'


async def test_append_retry_after_later_appends_replays_without_appending(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    first = await client.post(url, content=b'one\n', headers=KEY)
    assert (await client.post(url, content=b'two\n')).status_code == 200
    same_history_answer(first, await client.post(url, content=b'one\n', headers=KEY))
    assert await history_of(client, chat_id) == b'one\ntwo\n'


async def test_append_retry_with_the_if_match_it_was_sent_with_replays_not_412(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    before = (await client.get(url)).headers['etag']
    headers = KEY | {'If-Match': before}
    first = await client.post(url, content=b'once\n', headers=headers)
    # the first write changed the version: without the key the retry would be 412
    same_history_answer(first, await client.post(url, content=b'once\n', headers=headers))
    assert await history_of(client, chat_id) == b'once\n'


async def test_append_retry_with_other_bytes_is_422_and_leaves_no_trace(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    await client.post(url, content=b'first\n', headers=KEY)
    used = await used_bytes(client)
    blobs = blob_area(data_dir)
    response = await client.post(url, content=b'second\n', headers=KEY)
    assert problem_code(response) == 'idempotency_key_reused'
    assert await history_of(client, chat_id) == b'first\n'
    assert await used_bytes(client) == used
    assert blob_area(data_dir) == blobs
    assert staging_entries(data_dir) == set()


async def test_same_key_on_an_append_and_a_history_put_is_422(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    await client.post(url, content=b'text\n', headers=KEY)
    response = await client.put(url, content=b'text\n', headers=KEY)
    assert problem_code(response) == 'idempotency_key_reused'
    assert await history_of(client, chat_id) == b'text\n'


async def test_history_put_retry_does_not_overwrite_a_later_write(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    url = f'/v1/chats/{chat_id}/history'
    first = await client.put(url, content=b'v1\n', headers=KEY)
    assert (await client.put(url, content=b'v2\n')).status_code == 200
    same_history_answer(first, await client.put(url, content=b'v1\n', headers=KEY))
    assert await history_of(client, chat_id) == b'v2\n'


async def test_a_refused_append_keeps_no_key(client: httpx.AsyncClient, chat_id: str) -> None:
    url = f'/v1/chats/{chat_id}/history'
    refused = await client.post(url, content=b'\xff not utf-8', headers=KEY)
    assert problem_code(refused) == 'invalid_history_encoding'
    assert (await client.post(url, content=b'fixed\n', headers=KEY)).status_code == 200
    assert await history_of(client, chat_id) == b'fixed\n'


@pytest.mark.usefixtures('workspace')
async def test_keys_are_per_user(client: httpx.AsyncClient, other_user: dict[str, str]) -> None:
    mine = await client.post('/v1/chats', json={'title': 'mine'}, headers=KEY)
    assert (await client.put('/v1/workspace', headers=other_user)).status_code == 201
    theirs = await client.post('/v1/chats', json={'title': 'theirs'}, headers=other_user | KEY)
    assert theirs.status_code == 201
    assert theirs.json()['chat_id'] != mine.json()['chat_id']
    assert await chat_count(client) == 1
    assert await chat_count(client, other_user) == 1


@pytest.mark.usefixtures('workspace')
async def test_a_key_older_than_a_day_is_new_again(
    client: httpx.AsyncClient, clock: StepClock
) -> None:
    first = await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    clock.advance(24 * 3600)
    second = await client.post('/v1/chats', json={'title': 'other'}, headers=KEY)
    assert second.status_code == 201
    assert second.json()['chat_id'] != first.json()['chat_id']
    assert await chat_count(client) == 2
    again = await client.post('/v1/chats', json={'title': 'other'}, headers=KEY)
    same_answer(second, again)


@pytest.mark.usefixtures('workspace')
async def test_a_key_younger_than_a_day_still_replays(
    client: httpx.AsyncClient, clock: StepClock
) -> None:
    first = await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    clock.advance(24 * 3600 - 60)
    same_answer(first, await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY))
    assert await chat_count(client) == 1


async def test_a_failed_create_keeps_no_key(client: httpx.AsyncClient) -> None:
    refused = await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    assert problem_code(refused) == 'workspace_not_found'
    assert (await client.put('/v1/workspace')).status_code == 201
    created = await client.post('/v1/chats', json={'title': 'plan'}, headers=KEY)
    assert created.status_code == 201


@pytest.mark.usefixtures('workspace')
@pytest.mark.parametrize('key', ['', 'k' * 256, 'tab\there', 'del\x7f'])
async def test_a_bad_key_is_a_validation_error(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post('/v1/chats', json={}, headers={'Idempotency-Key': key})
    assert response.status_code == 422
    assert problem_code(response) == 'validation_error'
    assert response.json()['errors'][0]['loc'] == ['header', 'Idempotency-Key']
    assert await chat_count(client) == 0


@pytest.mark.usefixtures('workspace')
async def test_a_key_of_255_printable_characters_is_accepted(client: httpx.AsyncClient) -> None:
    key = {'Idempotency-Key': 'k' * 254 + '~'}
    first = await client.post('/v1/chats', json={}, headers=key)
    assert first.status_code == 201
    same_answer(first, await client.post('/v1/chats', json={}, headers=key))


async def test_openapi_documents_the_header_on_the_create_routes(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get('/openapi.json')).json()['paths']
    operations = [
        paths['/v1/chats']['post'],
        paths['/v1/chats/{chat_id}/files']['post'],
        next(v['put'] for k, v in paths.items() if k.startswith('/v1/chats/{chat_id}/files/by-')),
    ]
    for operation in operations:
        [header] = [p for p in operation['parameters'] if p['name'] == 'Idempotency-Key']
        assert header['in'] == 'header'
        assert header['required'] is False
        assert 'idempotency_key_reused' in header['description']
        assert operation['responses']['201']['content']['application/json']['schema']


async def test_openapi_documents_the_header_on_the_history_writes(
    client: httpx.AsyncClient,
) -> None:
    history = (await client.get('/openapi.json')).json()['paths']['/v1/chats/{chat_id}/history']
    for operation in (history['put'], history['post']):
        [header] = [p for p in operation['parameters'] if p['name'] == 'Idempotency-Key']
        assert (header['in'], header['required']) == ('header', False)
        assert 'idempotency_key_reused' in str(operation['responses']['422'])
