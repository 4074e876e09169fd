"""Uploads seen from the outside while they are still being sent, or after they are cut off."""

import http.client
import os
import time
from contextlib import closing

import pytest
from e2e_support import (
    HOST,
    Caller,
    Json,
    ServerProcess,
    blob_area,
    dir_snapshot,
    sha256,
    staging_entries,
)

pytestmark = pytest.mark.e2e

OLD = os.urandom(10_000)
NEW = os.urandom(60_000)
SETTLE_SECONDS = 5.0


def _start_upload(
    server: ServerProcess, caller: Caller, path: str, *, length: int | None
) -> http.client.HTTPConnection:
    """Request line and headers sent; the body follows with `send`."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=30)
    connection.putrequest('PUT', path, skip_accept_encoding=True)
    connection.putheader('X-User-Id', str(caller.user_id))
    connection.putheader('Content-Type', 'application/octet-stream')
    if length is None:
        connection.putheader('Transfer-Encoding', 'chunked')
    else:
        connection.putheader('Content-Length', str(length))
    connection.endheaders()
    return connection


def _chunk(data: bytes) -> bytes:
    return b'%x\r\n%s\r\n' % (len(data), data)


@pytest.fixture
def chat_with_old_file(caller: Caller) -> tuple[Json, Json]:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'# history\n')
    return chat, caller.stored_file(chat['chat_id'], 'doc.bin', OLD)


def _state(caller: Caller, chat: Json) -> tuple[dict[str, str], int, list[Json]]:
    return dir_snapshot(caller.chat_dir(chat)), caller.used_bytes(), caller.files(chat['chat_id'])


def _wait_for_no_staging(server: ServerProcess) -> set[str]:
    """The server learns of a cut connection asynchronously; give it a moment."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while (left := staging_entries(server.data_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize('framing', ['content-length', 'chunked'])
def test_old_file_stays_readable_until_the_replacement_is_committed(
    server: ServerProcess, caller: Caller, chat_with_old_file: tuple[Json, Json], framing: str
) -> None:
    chat, old = chat_with_old_file
    before = _state(caller, chat)
    chunked = framing == 'chunked'
    path = f'/v1/chats/{chat["chat_id"]}/files/by-name/doc.bin'

    with closing(_start_upload(server, caller, path, length=None if chunked else len(NEW))) as up:
        half = len(NEW) // 2
        up.send(_chunk(NEW[:half]) if chunked else NEW[:half])
        time.sleep(0.3)

        assert caller.content(chat['chat_id'], old['file_id']) == OLD
        assert caller.http.get(f'/v1/chats/{chat["chat_id"]}/files/{old["file_id"]}').json() == old
        assert _state(caller, chat) == before
        assert (caller.chat_dir(chat) / 'doc.bin').read_bytes() == OLD

        up.send(_chunk(NEW[half:]) + b'0\r\n\r\n' if chunked else NEW[half:])
        response = up.getresponse()
        assert response.status == 200, response.read()
        response.read()

    files = caller.files(chat['chat_id'])
    assert [f['sha256'] for f in files] == [sha256(NEW)]
    assert files[0]['file_id'] != old['file_id']
    assert caller.content(chat['chat_id'], files[0]['file_id']) == NEW
    assert (caller.chat_dir(chat) / 'doc.bin').read_bytes() == NEW
    assert caller.used_bytes() == len(b'# history\n') + len(NEW)


@pytest.mark.parametrize('framing', ['content-length', 'chunked'])
def test_an_upload_cut_off_midway_leaves_the_old_file_and_no_trace(
    server: ServerProcess, caller: Caller, chat_with_old_file: tuple[Json, Json], framing: str
) -> None:
    chat, old = chat_with_old_file
    before = _state(caller, chat)
    blobs_before = blob_area(server.data_dir)
    chunked = framing == 'chunked'
    path = f'/v1/chats/{chat["chat_id"]}/files/by-name/doc.bin'

    upload = _start_upload(server, caller, path, length=None if chunked else len(NEW))
    half = NEW[: len(NEW) // 2]
    upload.send(_chunk(half) if chunked else half)
    time.sleep(0.2)
    upload.close()

    assert _wait_for_no_staging(server) == set()
    assert _state(caller, chat) == before
    assert blob_area(server.data_dir) == blobs_before
    assert caller.content(chat['chat_id'], old['file_id']) == OLD
    assert (caller.chat_dir(chat) / 'doc.bin').read_bytes() == OLD


def test_a_new_file_cut_off_midway_is_not_created(
    server: ServerProcess, caller: Caller, chat_with_old_file: tuple[Json, Json]
) -> None:
    chat, _ = chat_with_old_file
    before = _state(caller, chat)
    blobs_before = blob_area(server.data_dir)
    path = f'/v1/chats/{chat["chat_id"]}/files/by-name/partial.bin'

    upload = _start_upload(server, caller, path, length=len(NEW))
    upload.send(NEW[:1_000])
    time.sleep(0.2)
    upload.close()

    assert _wait_for_no_staging(server) == set()
    assert _state(caller, chat) == before
    assert blob_area(server.data_dir) == blobs_before
    assert not (caller.chat_dir(chat) / 'partial.bin').exists()


def test_a_history_write_cut_off_midway_leaves_the_history(
    server: ServerProcess, caller: Caller, chat_with_old_file: tuple[Json, Json]
) -> None:
    chat, _ = chat_with_old_file
    before = _state(caller, chat)
    blobs_before = blob_area(server.data_dir)
    etag = caller.http.get(f'/v1/chats/{chat["chat_id"]}/history').headers['etag']
    path = f'/v1/chats/{chat["chat_id"]}/history'

    upload = _start_upload(server, caller, path, length=10_000)
    upload.send(b'# replaced' + b'x' * 2_000)
    time.sleep(0.2)
    upload.close()

    assert _wait_for_no_staging(server) == set()
    assert _state(caller, chat) == before
    assert blob_area(server.data_dir) == blobs_before
    history = caller.http.get(path)
    assert history.content == b'# history\n'
    assert history.headers['etag'] == etag
