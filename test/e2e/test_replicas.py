"""Two real server processes on one PostgreSQL database and one data directory."""

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from uuid import uuid4

import httpx
import pytest
from e2e_support import ServerProcess, blob_area, blob_path, sha256, staging_entries

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

QUOTA = 100_000
UPLOAD = 10_000


@pytest.fixture(scope='module')
def replicas(
    make_postgres_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    dsn = make_postgres_database()
    root = tmp_path_factory.mktemp('replicas')
    env = {'STORAGE_POSTGRES_DSN': dsn, 'STORAGE_DEFAULT_QUOTA_BYTES': str(QUOTA)}
    logs = [root / 'logs-a', root / 'logs-b']
    for log in logs:
        log.mkdir()
    first = ServerProcess(root / 'data', logs[0], backend='postgres', extra_env=env)
    second = ServerProcess(root / 'data', logs[1], backend='postgres', extra_env=env)
    with first, second:
        yield first, second


@pytest.fixture
async def clients(
    replicas: tuple[ServerProcess, ServerProcess],
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One caller (a user of its own) with a client on each replica."""
    headers = {'X-User-Id': str(uuid4())}
    made = [
        httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30.0)
        for server in replicas
    ]
    assert (await made[0].put('/v1/workspace')).status_code == 201
    yield made
    for client in made:
        await client.aclose()


async def new_chat(client: httpx.AsyncClient) -> str:
    response = await client.post('/v1/chats')
    assert response.status_code == 201
    return str(response.json()['chat_id'])


async def test_racing_uploads_never_exceed_the_quota(
    clients: list[httpx.AsyncClient], replicas: tuple[ServerProcess, ServerProcess]
) -> None:
    chat_id = await new_chat(clients[0])

    async def upload(index: int) -> httpx.Response:
        client = clients[index % 2]
        return await client.put(
            f'/v1/chats/{chat_id}/files/by-name/f{index}', content=bytes([index]) * UPLOAD
        )

    responses = await asyncio.gather(*(upload(i) for i in range(32)))
    accepted = [i for i, r in enumerate(responses) if r.status_code == 201]
    refused = [i for i, r in enumerate(responses) if r.status_code == 413]
    assert len(accepted) + len(refused) == 32
    assert len(accepted) * UPLOAD <= QUOTA
    assert all(
        r.json()['code'] == 'workspace_quota_exceeded' for r in responses if r.status_code == 413
    )
    files = (await clients[1].get(f'/v1/chats/{chat_id}/files', params={'limit': 200})).json()
    assert sorted(f['name'] for f in files['items']) == sorted(f'f{i}' for i in accepted)
    usage = (await clients[0].get('/v1/workspace/usage')).json()
    assert usage['used_bytes'] == sum(f['size_bytes'] for f in files['items'])
    chat_dir = next((replicas[0].data_dir / 'workspaces').glob(f'*/chats/{chat_id}'))
    on_disk = {p.name for p in chat_dir.iterdir()}
    assert on_disk == {'history.md'} | {f'f{i}' for i in accepted}
    for index in accepted:
        digest = hashlib.sha256((chat_dir / f'f{index}').read_bytes()).hexdigest()
        assert digest == hashlib.sha256(bytes([index]) * UPLOAD).hexdigest()
    # a refused upload leaves no blob: the blob area holds the accepted files' only
    data_dir = replicas[0].data_dir
    assert staging_entries(data_dir) == set()
    accepted_blobs = {blob_path(data_dir, f['file_id']) for f in files['items']}
    assert {data_dir / '.blobs' / name for name in blob_area(data_dir)} == accepted_blobs


async def test_if_match_race_has_exactly_one_winner(clients: list[httpx.AsyncClient]) -> None:
    chat_id = await new_chat(clients[0])
    url = f'/v1/chats/{chat_id}/history'
    etag = (await clients[0].put(url, content=b'base')).headers['etag']
    responses = await asyncio.gather(
        clients[0].put(url, content=b'from replica a', headers={'If-Match': etag}),
        clients[1].put(url, content=b'from replica b', headers={'If-Match': etag}),
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 412]
    winner = next(r for r in responses if r.status_code == 200)
    history = await clients[1].get(url)
    assert history.headers['etag'] == winner.headers['etag']
    assert history.content in {b'from replica a', b'from replica b'}


async def test_sandbox_race_starts_exactly_one_session(clients: list[httpx.AsyncClient]) -> None:
    chat_id = await new_chat(clients[0])
    url = f'/v1/chats/{chat_id}/sandbox'
    responses = await asyncio.gather(clients[0].put(url, json={}), clients[1].put(url, json={}))
    assert sorted(r.status_code for r in responses) == [201, 409]


async def test_appends_through_both_replicas_are_whole_and_once(
    clients: list[httpx.AsyncClient],
) -> None:
    chat_id = await new_chat(clients[0])
    url = f'/v1/chats/{chat_id}/history'
    blocks = [f'<block {i:02d} {"x" * 300} end {i:02d}>\n'.encode() for i in range(20)]
    responses = await asyncio.gather(
        *(clients[i % 2].post(url, content=block) for i, block in enumerate(blocks))
    )
    assert all(r.status_code == 200 for r in responses)
    history = (await clients[0].get(url)).content
    assert len(history) == sum(len(b) for b in blocks)
    for block in blocks:
        assert history.count(block) == 1
    usage = (await clients[1].get('/v1/workspace/usage')).json()
    assert usage['used_bytes'] == len(history)


def assert_same_answer(first: httpx.Response, again: httpx.Response) -> None:
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers['location'] == first.headers['location']


async def test_concurrent_uploads_with_one_key_store_one_file(
    clients: list[httpx.AsyncClient], replicas: tuple[ServerProcess, ServerProcess]
) -> None:
    chat = await clients[0].post('/v1/chats')
    chat_id = chat.json()['chat_id']
    content = bytes(range(250)) * 40  # six of them stay within QUOTA
    rounds = 6
    for index in range(rounds):
        url = f'/v1/chats/{chat_id}/files/by-name/f{index}'
        key = {'Idempotency-Key': f'race-{index}'}
        answers = await asyncio.gather(
            clients[0].put(url, content=content, headers=key),
            clients[1].put(url, content=content, headers=key),
        )
        assert answers[0].status_code == 201, answers[0].text
        assert_same_answer(answers[0], answers[1])
    files = (await clients[1].get(f'/v1/chats/{chat_id}/files')).json()['items']
    assert sorted(f['name'] for f in files) == sorted(f'f{i}' for i in range(rounds))
    usage = (await clients[0].get('/v1/workspace/usage')).json()
    assert usage['used_bytes'] == rounds * len(content)
    chat_dir = next((replicas[0].data_dir / 'workspaces').glob(f'*/chats/{chat_id}'))
    for index in range(rounds):
        assert sha256((chat_dir / f'f{index}').read_bytes()) == sha256(content)
    assert staging_entries(replicas[0].data_dir) == set()


async def test_concurrent_chat_creates_with_one_key_make_one_chat(
    clients: list[httpx.AsyncClient],
) -> None:
    key = {'Idempotency-Key': 'one-chat'}
    answers = await asyncio.gather(
        *(clients[i % 2].post('/v1/chats', json={'title': 't'}, headers=key) for i in range(6))
    )
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    for answer in answers[1:]:
        assert_same_answer(answers[0], answer)
    chats = (await clients[1].get('/v1/chats')).json()['items']
    assert [c['chat_id'] for c in chats] == [answers[0].json()['chat_id']]
