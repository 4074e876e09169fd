"""Hostile clients on raw sockets: oversized heads, truncated forms, cut-off uploads.

A real server: what uvicorn does with the bytes before the app sees them is the point.
Complements test_uploads_in_flight.py (raw PUT and history PUT cut off) with the
multipart route, appends and request heads.
"""

import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from e2e_support import (
    HOST,
    HTTP_SERVER,
    Caller,
    Json,
    ServerProcess,
    assert_problem,
    dir_snapshot,
    multipart_body,
    staging_entries,
)

pytestmark = pytest.mark.e2e

BOUNDARY = 'e2e-hostile-boundary'
OLD = os.urandom(8_000)
NEW = os.urandom(120_000)
SETTLE_SECONDS = 5.0
# larger than any head limit of the servers `chat-storage serve` runs: Granian (hyper's
# read buffer, about 408 KiB, and at most 100 headers) and uvicorn with h11 (64 KiB,
# api/server.py MAX_REQUEST_HEAD_BYTES)
OVERSIZED_HEAD_BYTES = 512 * 1024


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (SQLite): the HTTP edge, not the metadata store, is under test."""
    root = tmp_path_factory.mktemp('hostile-transport')
    with ServerProcess(root / 'data', root) as process:
        yield process


def _connect(server: ServerProcess) -> socket.socket:
    connection = socket.create_connection((HOST, server.port), timeout=10)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _read_reply(connection: socket.socket) -> bytes:
    """What the server sent before closing (or within the timeout); b'' on a reset."""
    received = b''
    try:
        while chunk := connection.recv(65536):
            received += chunk
            if b'\r\n\r\n' in received and _body_complete(received):
                break
    except (ConnectionResetError, TimeoutError):
        pass
    return received


def _body_complete(reply: bytes) -> bool:
    head, _, body = reply.partition(b'\r\n\r\n')
    for line in head.split(b'\r\n')[1:]:
        name, _, value = line.partition(b':')
        if name.strip().lower() == b'content-length':
            return len(body) >= int(value.strip())
    return False


def _status(reply: bytes) -> int | None:
    if not reply.startswith(b'HTTP/1.1 '):
        return None
    return int(reply.split(b' ', 2)[1])


def _assert_still_serving(caller: Caller) -> None:
    assert caller.http.get('/healthz').status_code == 200
    assert caller.http.get('/v1/workspace').status_code in {200, 404}


# --- request heads -----------------------------------------------------------------------------


def _request_head(caller: Caller, extra_headers: bytes) -> bytes:
    return (
        b'GET /v1/workspace HTTP/1.1\r\nHost: test\r\nX-User-Id: '
        + str(caller.user_id).encode()
        + b'\r\n'
        + extra_headers
        + b'\r\n'
    )


OVERSIZED_HEADS = {
    'one 1 MB header': b'X-Big: ' + b'a' * 1_000_000 + b'\r\n',
    'one 8 MB header': b'X-Big: ' + b'a' * 8_000_000 + b'\r\n',
    '60000 small headers': b''.join(b'X-H%d: v\r\n' % i for i in range(60_000)),
    '1 MB request line': b'X-Pad: x\r\n',  # the path below is made long instead
}


@pytest.mark.parametrize('extra', OVERSIZED_HEADS.values(), ids=OVERSIZED_HEADS.keys())
def test_an_oversized_request_head_is_refused_and_the_server_goes_on(
    server: ServerProcess, caller: Caller, extra: bytes
) -> None:
    caller.workspace()
    head = _request_head(caller, extra)
    if extra == OVERSIZED_HEADS['1 MB request line']:
        head = head.replace(b'/v1/workspace', b'/v1/workspace?pad=' + b'p' * 1_000_000, 1)
    assert len(head) > OVERSIZED_HEAD_BYTES

    with _connect(server) as connection:
        try:
            connection.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            reply = b''  # closed while we were still sending: refused as well
        else:
            reply = _read_reply(connection)

    # refused before the app runs: 400/431 and a closed connection, or just the close
    assert _status(reply) in {None, 400, 431}, reply[:200]
    assert b'"used_bytes"' not in reply
    _assert_still_serving(caller)
    assert server.process is not None
    assert server.process.poll() is None


def test_a_large_but_allowed_request_head_is_served(server: ServerProcess, caller: Caller) -> None:
    caller.workspace()
    head = _request_head(caller, b'X-Trace: ' + b't' * 16_000 + b'\r\nConnection: close\r\n')
    assert len(head) > 16_000

    with _connect(server) as connection:
        connection.sendall(head)
        reply = _read_reply(connection)

    assert _status(reply) == 200, reply[:300]
    assert b'"used_bytes"' in reply


# --- multipart forms cut short -------------------------------------------------------------------


@pytest.fixture
def chat_with_old_file(caller: Caller) -> tuple[Json, Json]:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'# history\n')
    return chat, caller.stored_file(chat['chat_id'], 'doc.bin', OLD)


def _state(caller: Caller, chat: Json) -> tuple[dict[str, str], int, list[Json], bytes, str]:
    history = caller.http.get(f'/v1/chats/{chat["chat_id"]}/history')
    return (
        dir_snapshot(caller.chat_dir(chat)),
        caller.used_bytes(),
        caller.files(chat['chat_id']),
        history.content,
        history.headers['etag'],
    )


def _wait_for_no_staging(server: ServerProcess) -> set[str]:
    """The server learns of a cut connection asynchronously; give it a moment."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while (left := staging_entries(server.data_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _post_head(caller: Caller, path: str, content_type: str, length: int | None) -> bytes:
    framing = b'Transfer-Encoding: chunked' if length is None else b'Content-Length: %d' % length
    return (
        b'POST ' + path.encode() + b' HTTP/1.1\r\nHost: test\r\n'
        b'X-User-Id: ' + str(caller.user_id).encode() + b'\r\n'
        b'Content-Type: ' + content_type.encode() + b'\r\n' + framing + b'\r\n\r\n'
    )  # fmt: skip


def _chunk(data: bytes) -> bytes:
    return b'%x\r\n%s\r\n' % (len(data), data)


MULTIPART = f'multipart/form-data; boundary={BOUNDARY}'


@pytest.mark.parametrize('name', ['doc.bin', 'new.bin'], ids=['replacing', 'new'])
@pytest.mark.parametrize('framing', ['content-length', 'chunked'])
def test_a_multipart_upload_cut_off_midway_leaves_no_trace(
    server: ServerProcess,
    caller: Caller,
    chat_with_old_file: tuple[Json, Json],
    framing: str,
    name: str,
) -> None:
    chat, old = chat_with_old_file
    before = _state(caller, chat)
    body = multipart_body(BOUNDARY, NEW, filename=name.encode())
    chunked = framing == 'chunked'
    path = f'/v1/chats/{chat["chat_id"]}/files'

    with _connect(server) as connection:
        connection.sendall(_post_head(caller, path, MULTIPART, None if chunked else len(body)))
        half = body[: len(body) // 2]
        connection.sendall(_chunk(half) if chunked else half)
        time.sleep(0.2)

    assert _wait_for_no_staging(server) == set()
    assert _state(caller, chat) == before
    assert caller.content(chat['chat_id'], old['file_id']) == OLD
    assert not (caller.chat_dir(chat) / 'new.bin').exists()
    _assert_still_serving(caller)


TRUNCATIONS: dict[str, Callable[[bytes], bytes]] = {
    'no closing boundary': lambda body: body[: body.rindex(b'\r\n--')],
    'cut inside the file part': lambda body: body[: len(body) // 2],
    'cut inside the part headers': lambda body: body[: body.index(b'Content-Type')],
    'only the preamble': lambda body: body[: len(BOUNDARY) + 4],
}


@pytest.mark.parametrize('truncate', TRUNCATIONS.values(), ids=TRUNCATIONS.keys())
def test_a_complete_request_with_a_truncated_form_is_422_and_leaves_no_trace(
    caller: Caller, chat_with_old_file: tuple[Json, Json], truncate: Callable[[bytes], bytes]
) -> None:
    chat, old = chat_with_old_file
    before = _state(caller, chat)
    body = truncate(multipart_body(BOUNDARY, NEW, filename=b'doc.bin'))

    response = caller.http.post(
        f'/v1/chats/{chat["chat_id"]}/files', content=body, headers={'Content-Type': MULTIPART}
    )

    assert_problem(response, 422, 'validation_error')
    assert staging_entries(caller.server.data_dir) == set()
    assert _state(caller, chat) == before
    assert caller.content(chat['chat_id'], old['file_id']) == OLD


@pytest.mark.parametrize('framing', ['content-length', 'chunked'])
def test_an_append_cut_off_midway_leaves_the_history(
    server: ServerProcess, caller: Caller, chat_with_old_file: tuple[Json, Json], framing: str
) -> None:
    chat, _ = chat_with_old_file
    before = _state(caller, chat)
    path = f'/v1/chats/{chat["chat_id"]}/history'
    block = b'**user:** ' + b'x' * 50_000 + b'\n'
    chunked = framing == 'chunked'

    with _connect(server) as connection:
        connection.sendall(
            _post_head(caller, path, 'text/markdown', None if chunked else len(block))
        )
        half = block[: len(block) // 2]
        connection.sendall(_chunk(half) if chunked else half)
        time.sleep(0.2)

    assert _wait_for_no_staging(server) == set()
    assert _state(caller, chat) == before
    assert (caller.chat_dir(chat) / 'history.md').read_bytes() == b'# history\n'
    appended = caller.http.post(path, content=b'next\n')
    assert appended.status_code == 200, appended.text
    assert caller.history(chat['chat_id']) == b'# history\nnext\n'


BROKEN_BODIES: dict[str, tuple[str, str, bytes]] = {
    # route, extra head, body; the client then half-closes and waits for the answer
    'raw PUT, a bad chunk size': ('PUT', 'files/by-name/x', b'zz\r\nabc\r\n0\r\n\r\n'),
    'history PUT, a bad chunk size': ('PUT', 'history', b'zz\r\nabc\r\n0\r\n\r\n'),
    'append, a bad chunk size': ('POST', 'history', b'zz\r\nabc\r\n0\r\n\r\n'),
    'multipart, a bad chunk size': ('POST', 'files', b'zz\r\n--B\r\n0\r\n\r\n'),
    'raw PUT, half the Content-Length': ('PUT', 'files/by-name/x', b'a' * 50),
    'append, half the Content-Length': ('POST', 'history', b'a' * 50),
}


@pytest.mark.parametrize(
    ('method', 'route', 'body'), BROKEN_BODIES.values(), ids=BROKEN_BODIES.keys()
)
def test_a_body_the_server_cannot_read_whole_is_a_client_error_never_a_500(
    server: ServerProcess,
    caller: Caller,
    chat_with_old_file: tuple[Json, Json],
    method: str,
    route: str,
    body: bytes,
) -> None:
    chat, old = chat_with_old_file
    before = _state(caller, chat)
    framing = b'Content-Length: 100' if body == b'a' * 50 else b'Transfer-Encoding: chunked'
    content_type = b'multipart/form-data; boundary=B' if route == 'files' else b'text/plain'
    head = (
        f'{method} /v1/chats/{chat["chat_id"]}/{route} HTTP/1.1\r\nHost: test\r\n'.encode()
        + b'X-User-Id: ' + str(caller.user_id).encode() + b'\r\n'
        + b'Content-Type: ' + content_type + b'\r\n' + framing + b'\r\n\r\n'
    )  # fmt: skip

    with _connect(server) as connection:
        connection.sendall(head + body)
        connection.shutdown(socket.SHUT_WR)
        reply = _read_reply(connection)

    if HTTP_SERVER == 'granian':
        # Granian hands the app what it could read, then the end: the app's answer
        assert _status(reply) == 422, reply[:300]
        assert b'"code":"validation_error"' in reply
    else:
        # uvicorn's parser refuses a bad framing itself (400) and drops a short body
        assert _status(reply) in {400, None}, reply[:300]
    assert _wait_for_no_staging(server) == set()
    assert _state(caller, chat) == before
    assert caller.content(chat['chat_id'], old['file_id']) == OLD
    _assert_still_serving(caller)
