"""Concurrent writers over real HTTP connections."""

import asyncio
import hashlib
import re
from collections import Counter

import httpx
import pytest
from e2e_support import HTTP_TIMEOUT, Caller, ServerProcess, dir_snapshot, staging_entries

pytestmark = pytest.mark.e2e

APPENDS = 20
BLOCK = re.compile(rb'<<(\d+)>>\n(x*)\n<</(\d+)>>\n')


def _block(index: int) -> bytes:
    # distinct, recognisable and large enough to be sent in more than one TCP segment
    return b'<<%d>>\n' % index + b'x' * (4_000 + index) + b'\n<</%d>>\n' % index


def _async_client(server: ServerProcess, caller: Caller) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url,
        headers={'X-User-Id': str(caller.user_id)},
        timeout=HTTP_TIMEOUT,
        limits=httpx.Limits(max_connections=APPENDS),
    )


async def test_concurrent_appends_keep_every_block_once_and_whole(
    server: ServerProcess, caller: Caller
) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/history'
    caller.http.put(path, content=b'# start\n')
    blocks = [_block(i) for i in range(APPENDS)]

    async with _async_client(server, caller) as http:
        responses = await asyncio.gather(*(http.post(path, content=b) for b in blocks))

    assert [r.status_code for r in responses] == [200] * APPENDS
    history = caller.history(chat['chat_id'])
    assert history.startswith(b'# start\n')
    body = history[len(b'# start\n') :]
    found = BLOCK.findall(body)
    assert b''.join(b'<<%s>>\n%s\n<</%s>>\n' % match for match in found) == body, 'interleaved'
    assert all(opening == closing for opening, _, closing in found)
    assert Counter(int(opening) for opening, _, _ in found) == Counter(range(APPENDS))
    assert all(len(xs) == 4_000 + int(i) for i, xs, _ in found)
    total = len(b'# start\n') + sum(map(len, blocks))
    assert len(history) == total
    assert max(r.json()['size_bytes'] for r in responses) == total
    assert len({r.json()['etag'] for r in responses}) == APPENDS
    assert caller.used_bytes() == total
    assert dir_snapshot(caller.chat_dir(chat)).keys() == {'history.md'}
    assert staging_entries(server.data_dir) == set()


@pytest.mark.parametrize('method', ['PUT', 'POST'])
async def test_two_writers_with_the_same_if_match_one_wins_one_gets_412(
    server: ServerProcess, caller: Caller, method: str
) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/history'

    async with _async_client(server, caller) as http:
        for round_number in range(5):
            start = b'round %d\n' % round_number
            etag = (await http.put(path, content=start)).headers['etag']
            bodies = [b'writer A %d\n' % round_number, b'writer B %d\n' % round_number]

            responses = await asyncio.gather(
                *(http.request(method, path, content=b, headers={'If-Match': etag}) for b in bodies)
            )

            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200, 412], [r.text for r in responses]
            loser = next(r for r in responses if r.status_code == 412)
            assert loser.headers['content-type'] == 'application/problem+json'
            assert loser.json()['code'] == 'precondition_failed'
            winner = bodies[[r.status_code for r in responses].index(200)]
            expected = winner if method == 'PUT' else start + winner
            current = await http.get(path)
            assert current.content == expected
            assert current.headers['etag'] == next(
                r.headers['etag'] for r in responses if r.status_code == 200
            )


async def test_concurrent_uploads_of_one_name_leave_one_whole_file(
    server: ServerProcess, caller: Caller
) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/files/by-name/shared.bin'
    payloads = [bytes([i]) * (20_000 + i) for i in range(8)]

    async with _async_client(server, caller) as http:
        responses = await asyncio.gather(*(http.put(path, content=p) for p in payloads))

    assert all(r.status_code in {200, 201} for r in responses), [r.text for r in responses]
    assert sorted(r.status_code for r in responses).count(201) == 1
    files = caller.files(chat['chat_id'])
    assert len(files) == 1
    data = caller.content(chat['chat_id'], files[0]['file_id'])
    assert data in payloads
    assert (caller.chat_dir(chat) / 'shared.bin').read_bytes() == data
    assert caller.used_bytes() == len(data)
    assert dir_snapshot(caller.chat_dir(chat)).keys() == {'history.md', 'shared.bin'}
    assert staging_entries(server.data_dir) == set()


# three versions, two of one size: a reader that mixes them up cannot hide behind a length
VERSIONS = (b'A' * 200_000, b'B' * 200_000, b'C' * 70_000)
READS = 150
REPLACEMENTS = 100


async def test_reads_during_replacements_get_one_committed_version_whole(
    server: ServerProcess, caller: Caller
) -> None:
    """Downloads and history reads racing at least 100 same-name replacements each get
    one whole committed version under its own ETag, never a mix or a body cut short."""
    chat_id = caller.workspace_and_chat()['chat_id']
    files = f'/v1/chats/{chat_id}/files'
    history = f'/v1/chats/{chat_id}/history'
    latest = {'file': caller.put_file(chat_id, 'r.bin', VERSIONS[0]).json()['file_id']}
    caller.http.put(history, content=VERSIONS[0])
    done = asyncio.Event()
    wrong: list[str] = []

    replaced = 0

    async def replace(http: httpx.AsyncClient) -> None:
        nonlocal replaced
        turn = 0
        while not done.is_set() or turn < REPLACEMENTS:
            turn += 1
            body = VERSIONS[turn % len(VERSIONS)]
            written = await http.put(f'{files}/by-name/r.bin', content=body)
            assert written.status_code == 200, written.text
            latest['file'] = written.json()['file_id']
            assert (await http.put(history, content=body)).status_code == 200
            replaced = turn

    async def read(http: httpx.AsyncClient) -> Counter[int]:
        statuses: Counter[int] = Counter()
        for _ in range(READS):
            got = await http.get(f'{files}/{latest["file"]}/content')
            statuses[got.status_code] += 1
            if got.status_code == 200:
                digest = hashlib.sha256(got.content).hexdigest()
                if got.headers['etag'] != f'"{digest}"':
                    wrong.append(f'file: {len(got.content)} bytes under {got.headers["etag"]}')
            got = await http.get(history)
            statuses[got.status_code] += 1
            size = int(got.headers['etag'].strip('"').split('-')[1])
            if got.content not in VERSIONS or len(got.content) != size:
                wrong.append(f'history: {len(got.content)} bytes under {got.headers["etag"]}')
        return statuses

    async with _async_client(server, caller) as http:
        writer = asyncio.create_task(replace(http))
        try:
            counts = await asyncio.gather(read(http), read(http))
        finally:
            done.set()
            await writer

    statuses = sum(counts, Counter[int]())
    assert replaced >= REPLACEMENTS
    assert wrong == []
    # a file replaced after its id was read is gone (404); everything else is read whole
    assert set(statuses) <= {200, 404}, statuses
    assert statuses[200] >= 2 * READS  # every history read, and some file reads


async def test_reads_racing_deletes_answer_404_never_500(
    server: ServerProcess, caller: Caller
) -> None:
    """A read that found the record, then lost the file to a delete that committed, is a
    `404` like a read after it, never a `500`."""
    caller.workspace()
    statuses: Counter[int] = Counter()

    async def one_round(http: httpx.AsyncClient) -> None:
        chat_id = (await http.post('/v1/chats', json={'title': 'race'})).json()['chat_id']
        body = b'x' * 100_000
        file_id = (await http.put(f'/v1/chats/{chat_id}/files/by-name/f.bin', content=body)).json()[
            'file_id'
        ]
        await http.put(f'/v1/chats/{chat_id}/history', content=body)
        reads = [
            http.get(f'/v1/chats/{chat_id}/files/{file_id}/content'),
            http.get(
                f'/v1/chats/{chat_id}/files/{file_id}/content', headers={'Range': 'bytes=0-9'}
            ),
            http.get(f'/v1/chats/{chat_id}/history'),
        ]
        deleting = http.delete(f'/v1/chats/{chat_id}')
        for got in await asyncio.gather(*reads, deleting):
            statuses[got.status_code] += 1

    async with _async_client(server, caller) as http:
        for _ in range(25):
            await one_round(http)

    assert set(statuses) <= {200, 204, 206, 404}, statuses
    assert statuses[204] == 25
