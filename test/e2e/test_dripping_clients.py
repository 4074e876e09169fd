"""Clients that drip a request body on a real socket, then stall: `408`, and let go.

`STORAGE_BODY_CHUNK_TIMEOUT_SECONDS` bounds the wait for each chunk of a body; the server
answers `408 request_timeout`, closes the connection and keeps nothing of the upload.
"""

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2e_support import HOST, HTTP_SERVER, Caller, Json, ServerProcess, staging_entries

pytestmark = pytest.mark.e2e

CHUNK_TIMEOUT = 1.0
# from the last byte sent to the server's answer and close: the timeout, and room for a
# loaded machine
LET_GO_WITHIN = CHUNK_TIMEOUT + 4.0
DRIPPING_CLIENTS = 60
UVICORN_KEEP_ALIVE = 5.0


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (SQLite) with a short timeout: the HTTP edge is under test."""
    root = tmp_path_factory.mktemp('body-timeout')
    env = {'STORAGE_BODY_CHUNK_TIMEOUT_SECONDS': str(CHUNK_TIMEOUT)}
    with ServerProcess(root / 'data', root, extra_env=env) as process:
        yield process


def _open(server: ServerProcess, head: bytes) -> socket.socket:
    """A connection that has sent `head` (request line, headers and the blank line)."""
    connection = socket.create_connection((HOST, server.port), timeout=LET_GO_WITHIN + 5)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.sendall(head)
    return connection


def _head(method: str, path: str, caller: Caller, *headers: str) -> bytes:
    lines = [f'{method} {path} HTTP/1.1', 'Host: test', f'X-User-Id: {caller.user_id}', *headers]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode()


def _until_closed(connection: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds that
    took; a connection still open after the socket's timeout fails the test."""
    started = time.monotonic()
    received = b''
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f'the server kept the connection; it sent {received[:300]!r}')
    finally:
        connection.close()
    return received, time.monotonic() - started


def _problem(reply: bytes) -> tuple[int, dict[str, str], Json]:
    head, _, body = reply.partition(b'\r\n\r\n')
    status_line, *lines = head.decode('latin-1').split('\r\n')
    headers = {}
    for line in lines:
        name, _, value = line.partition(':')
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(' ')[1]), headers, json.loads(body)


def _assert_timed_out(reply: bytes, seconds: float) -> None:
    status, headers, body = _problem(reply)
    assert status == 408, reply[:300]
    assert headers['content-type'] == 'application/problem+json'
    assert headers['connection'] == 'close'
    assert body['code'] == 'request_timeout'
    assert seconds < LET_GO_WITHIN


def _assert_nothing_kept(server: ServerProcess, caller: Caller, chat: Json) -> None:
    assert caller.files(chat['chat_id']) == []
    assert caller.used_bytes() == 0
    assert sorted(p.name for p in caller.chat_dir(chat).iterdir()) == ['history.md']
    assert staging_entries(server.data_dir) == set()


@pytest.mark.parametrize('framing', ['content-length', 'chunked'])
def test_an_upload_that_stalls_is_408_closed_and_leaves_nothing(
    server: ServerProcess, caller: Caller, framing: str
) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/files/by-name/stalled.bin'
    if framing == 'chunked':
        head = _head('PUT', path, caller, 'Transfer-Encoding: chunked')
        drip = [b'1\r\nx\r\n'] * 3
    else:
        head = _head('PUT', path, caller, 'Content-Length: 100000')
        drip = [b'x'] * 3
    connection = _open(server, head)
    for byte in drip:  # a byte at a time, each well within the timeout
        connection.sendall(byte)
        time.sleep(CHUNK_TIMEOUT / 4)

    reply, seconds = _until_closed(connection)

    _assert_timed_out(reply, seconds)
    _assert_nothing_kept(server, caller, chat)


def test_many_dripping_clients_are_all_answered_and_let_go(
    server: ServerProcess, caller: Caller
) -> None:
    chat = caller.workspace_and_chat()

    def drip(index: int) -> tuple[bytes, float]:
        path = f'/v1/chats/{chat["chat_id"]}/files/by-name/drip-{index}.bin'
        connection = _open(server, _head('PUT', path, caller, 'Content-Length: 50000'))
        connection.sendall(b'x')
        return _until_closed(connection)

    with ThreadPoolExecutor(DRIPPING_CLIENTS) as pool:
        replies = list(pool.map(drip, range(DRIPPING_CLIENTS)))
        # while they wait, the server serves others
        assert caller.http.get('/healthz').status_code == 200

    for reply, seconds in replies:
        _assert_timed_out(reply, seconds)
    _assert_nothing_kept(server, caller, chat)


def test_a_json_body_that_stalls_is_408(server: ServerProcess, caller: Caller) -> None:
    caller.workspace()
    head = _head(
        'POST', '/v1/chats', caller, 'Content-Type: application/json', 'Content-Length: 40'
    )
    connection = _open(server, head + b'{"title": "sta')

    reply, seconds = _until_closed(connection)

    _assert_timed_out(reply, seconds)
    assert caller.http.get('/v1/chats').json()['items'] == []


def test_a_body_refused_unread_that_stalls_is_not_waited_for(
    server: ServerProcess, caller: Caller
) -> None:
    """A refusal before the body (a `401`) reads what is left of it after the answer
    (api/drain.py); a stalled rest ends that read in time. Granian then closes the
    connection at once; uvicorn when its keep-alive of 5 s, counted from the answer,
    runs out."""
    head = _head('PUT', '/v1/workspace', caller, 'Content-Length: 1000')
    connection = _open(server, head.replace(str(caller.user_id).encode(), b'nobody') + b'x')

    reply, seconds = _until_closed(connection)

    status, _, body = _problem(reply)
    assert (status, body['code']) == (401, 'unauthenticated')
    assert seconds < (LET_GO_WITHIN if HTTP_SERVER == 'granian' else UVICORN_KEEP_ALIVE + 3)
