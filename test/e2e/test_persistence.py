"""What survives a restart (SQLite), and what a sandbox sees on disk."""

import os
from urllib.parse import quote

import pytest
from e2e_support import (
    Caller,
    Json,
    MakeServer,
    ServerProcess,
    dir_snapshot,
    sha256,
    staging_entries,
)

pytestmark = pytest.mark.e2e


def _everything(caller: Caller) -> tuple[Json, list[Json], dict[str, tuple[bytes, str]], Json]:
    """Workspace, chats, each chat's history (bytes, etag) and files, as the API shows them."""
    workspace = caller.http.get('/v1/workspace').json()
    chats = caller.http.get('/v1/chats', params={'limit': 200}).json()['items']
    histories: dict[str, tuple[bytes, str]] = {}
    files: Json = {}
    for chat in chats:
        response = caller.http.get(f'/v1/chats/{chat["chat_id"]}/history')
        histories[chat['chat_id']] = (response.content, response.headers['etag'])
        files[chat['chat_id']] = caller.files(chat['chat_id'])
    return workspace, chats, histories, files


def _fill(caller: Caller) -> dict[str, bytes]:
    """Three chats with history and files; returns file_id -> bytes."""
    caller.workspace()
    contents: dict[str, bytes] = {}
    for i in range(3):
        chat = caller.chat(f'chat {i}')
        chat_id = chat['chat_id']
        caller.http.put(f'/v1/chats/{chat_id}/history', content=f'# chat {i}\n'.encode())
        caller.http.post(f'/v1/chats/{chat_id}/history', content='**user:** hé\n'.encode())
        for name, data in [(f'data-{i}.bin', os.urandom(1_000 + i)), ('same name.txt', b'x' * i)]:
            record = caller.stored_file(chat_id, quote(name), data)
            contents[record['file_id']] = data
        form = b'{"i": %d}' % i
        response = caller.http.post(
            f'/v1/chats/{chat_id}/files', files={'file': ('form.json', form, 'application/json')}
        )
        contents[response.json()['file_id']] = form
    # a replaced file: only the newest version is kept
    replaced = caller.files(chat_id)[0]
    record = caller.stored_file(chat_id, quote(replaced['name']), b'replacement')
    del contents[replaced['file_id']]
    contents[record['file_id']] = b'replacement'
    return contents


def test_restart_keeps_every_chat_file_and_history(make_server: MakeServer) -> None:
    server = make_server('sqlite')
    caller = Caller(server)
    try:
        contents = _fill(caller)
        before = _everything(caller)

        server.restart()

        assert _everything(caller) == before
        for chat in before[1]:
            for record in caller.files(chat['chat_id']):
                data = caller.content(chat['chat_id'], record['file_id'])
                assert sha256(data) == record['sha256']
                assert data == contents[record['file_id']]
        assert set(contents) == {f['file_id'] for fs in before[3].values() for f in fs}
        assert caller.used_bytes() == before[0]['used_bytes']
    finally:
        caller.close()


def test_restart_keeps_working_for_writes(make_server: MakeServer) -> None:
    server = make_server('sqlite')
    caller = Caller(server)
    try:
        chat = caller.workspace_and_chat()
        etag = caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'a').headers['etag']

        server.restart()

        response = caller.http.post(
            f'/v1/chats/{chat["chat_id"]}/history', content=b'b', headers={'If-Match': etag}
        )
        assert response.status_code == 200, response.text
        assert caller.history(chat['chat_id']) == b'ab'
        assert caller.http.put('/v1/workspace').status_code == 200
        assert staging_entries(server.data_dir) == set()
    finally:
        caller.close()


def test_restart_keeps_an_active_sandbox_session(make_server: MakeServer) -> None:
    server = make_server('sqlite')
    caller = Caller(server)
    try:
        chat = caller.workspace_and_chat()
        path = f'/v1/chats/{chat["chat_id"]}/sandbox'
        session = caller.http.put(path, json={'ttl_seconds': 600}).json()

        server.restart()

        assert caller.http.get(path).json() == session
        assert caller.http.delete(f'/v1/chats/{chat["chat_id"]}').status_code == 409
    finally:
        caller.close()


# --- the directory a sandbox mounts ----------------------------------------------------------

NAMES = [
    'report final.pdf',
    'ünïcødé \u2013 文件.txt',
    '.hidden',
    'no-extension',
    'a' * 200 + '.md',
]


def test_chat_directory_holds_exactly_history_and_the_attachments(
    server: ServerProcess, caller: Caller
) -> None:
    chat = caller.workspace_and_chat()
    chat_id = chat['chat_id']
    history = '# Chat\n\n**user:** hello 👋\n'.encode()
    caller.http.put(f'/v1/chats/{chat_id}/history', content=history)
    expected = {'history.md': sha256(history)}
    for index, name in enumerate(NAMES):
        data = os.urandom(100 + index)
        if index % 2:
            response = caller.http.post(
                f'/v1/chats/{chat_id}/files', data={'name': name}, files={'file': ('x', data)}
            )
        else:
            response = caller.put_file(chat_id, quote(name), data)
        assert response.status_code == 201, response.text
        assert response.json()['name'] == name
        expected[name] = sha256(data)

    chat_dir = caller.chat_dir(chat)

    assert dir_snapshot(chat_dir) == expected
    assert (chat_dir / 'history.md').read_bytes() == history
    assert all((chat_dir / name).is_file() for name in expected)
    assert not any((chat_dir / name).is_symlink() for name in expected)
    assert staging_entries(server.data_dir) == set()


def test_chat_directory_after_replace_and_delete_holds_only_current_files(
    caller: Caller,
) -> None:
    chat = caller.workspace_and_chat()
    chat_id = chat['chat_id']
    caller.stored_file(chat_id, 'a.txt', b'first')
    caller.stored_file(chat_id, 'a.txt', b'second')
    gone = caller.stored_file(chat_id, 'b.txt', b'gone')
    caller.http.delete(f'/v1/chats/{chat_id}/files/{gone["file_id"]}')
    caller.http.post(f'/v1/chats/{chat_id}/history', content=b'appended')

    assert dir_snapshot(caller.chat_dir(chat)) == {
        'history.md': sha256(b'appended'),
        'a.txt': sha256(b'second'),
    }


def test_workspace_directory_holds_only_chat_directories(
    server: ServerProcess, caller: Caller
) -> None:
    workspace = caller.workspace()
    chats = [caller.chat() for _ in range(2)]
    caller.http.delete(f'/v1/chats/{chats[0]["chat_id"]}')

    chats_dir = server.data_dir / 'workspaces' / workspace['workspace_id'] / 'chats'

    assert sorted(p.name for p in chats_dir.iterdir()) == [chats[1]['chat_id']]
