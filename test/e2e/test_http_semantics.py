"""HTTP semantics the servers must agree on (RFC 9110): conditional reads, HEAD, and what a
request line or head that no route expects gets. A real server: Granian sends large
downloads by path (`http.response.pathsend`), uvicorn streams them; both must answer alike.
"""

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_support import HOST, HTTP_SERVER, Caller, Json, ServerProcess, assert_problem

pytestmark = pytest.mark.e2e

LINK_SECRET = 'e2e-link-secret-http-semantics-0123456789'
# above the size read whole and sent as one body (64 KiB): Granian sends it by path
LARGE = bytes(range(256)) * (150_000 // 256)
# above the storage's read chunk (1 MiB): a read leaves the file open after its first chunk
LARGE_HISTORY = b'# history\n' + b'x' * 1_500_000
UNSTABLE_HEADERS = frozenset({'x-request-id', 'date', 'server', 'transfer-encoding'})


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (SQLite) with signed links and room for a large history: the HTTP edge
    is under test."""
    root = tmp_path_factory.mktemp('http-semantics')
    env = {
        'STORAGE_LINK_SECRET': LINK_SECRET,
        'STORAGE_MAX_FILE_BYTES': str(4 * len(LARGE_HISTORY)),
        'STORAGE_DEFAULT_QUOTA_BYTES': str(100 * len(LARGE_HISTORY)),
    }
    with ServerProcess(root / 'data', root, extra_env=env) as process:
        yield process


@pytest.fixture
def large_file(caller: Caller) -> tuple[Json, Json, list[str]]:
    """A chat, a file sent by path under Granian, and its two download URLs."""
    chat = caller.workspace_and_chat()
    record = caller.stored_file(chat['chat_id'], 'large.bin', LARGE)
    link = caller.http.post(
        f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/link', json={'expires_in': 600}
    )
    assert link.status_code == 201, link.text
    content_url = f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/content'
    return chat, record, [content_url, link.json()['url']]


# --- conditional reads -------------------------------------------------------------------------


def test_a_range_under_an_if_range_of_another_version_is_the_whole_file(
    caller: Caller, large_file: tuple[Json, Json, list[str]]
) -> None:
    _, record, urls = large_file
    for url in urls:
        for if_range in ('"nope"', 'Tue, 01 Dec 2026 10:00:00 GMT'):
            response = caller.http.get(url, headers={'Range': 'bytes=0-9', 'If-Range': if_range})
            assert response.status_code == 200, (url, if_range)
            assert response.content == LARGE
        current = caller.http.get(
            url, headers={'Range': 'bytes=0-9', 'If-Range': f'"{record["sha256"]}"'}
        )
        assert current.status_code == 206
        assert current.content == LARGE[:10]


def test_a_read_under_an_if_match_of_another_version_is_412(
    caller: Caller, large_file: tuple[Json, Json, list[str]]
) -> None:
    chat, record, urls = large_file
    for url in [*urls, f'/v1/chats/{chat["chat_id"]}/history']:
        assert_problem(
            caller.http.get(url, headers={'If-Match': '"nope"'}), 412, 'precondition_failed'
        )
        assert caller.http.get(url, headers={'If-Match': '*'}).status_code == 200
    matching = caller.http.get(urls[0], headers={'If-Match': f'"{record["sha256"]}"'})
    assert matching.status_code == 200
    assert matching.content == LARGE


# --- HEAD --------------------------------------------------------------------------------------


def _stable(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in UNSTABLE_HEADERS}


def test_head_answers_the_status_and_headers_of_get(
    caller: Caller, large_file: tuple[Json, Json, list[str]]
) -> None:
    chat, _, urls = large_file
    written = caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=LARGE_HISTORY)
    assert written.status_code == 200, written.text
    cases = [
        *((url, {}) for url in urls),
        *((url, {'Range': 'bytes=10-99'}) for url in urls),
        (urls[0], {'Range': 'bytes=999999-'}),
        (f'/v1/chats/{chat["chat_id"]}/history', {}),
        (f'/v1/chats/{chat["chat_id"]}/export', {}),
    ]
    for url, headers in cases:
        got = caller.http.get(url, headers=headers)
        head = caller.http.head(url, headers=headers)
        assert head.status_code == got.status_code, (url, headers)
        assert _stable(dict(head.headers)) == _stable(dict(got.headers)), (url, headers)
        assert head.content == b''
    export = caller.http.head(f'/v1/chats/{chat["chat_id"]}/export')
    assert 'content-length' not in export.headers  # the archive is streamed


def _head_reply(connection: socket.socket) -> bytes:
    """All the server sends within a moment: the head, and nothing after it."""
    connection.settimeout(0.5)
    return _received(connection)


def _received(connection: socket.socket) -> bytes:
    """What the server sends until it closes, or is quiet for the socket's timeout."""
    received = b''
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except TimeoutError:
        pass
    return received


def test_head_sends_no_body_and_the_connection_serves_on(
    server: ServerProcess, caller: Caller, large_file: tuple[Json, Json, list[str]]
) -> None:
    _, _, urls = large_file
    with socket.create_connection((HOST, server.port), timeout=10) as connection:
        for url in urls:
            connection.sendall(
                f'HEAD {url} HTTP/1.1\r\nHost: test\r\nX-User-Id: {caller.user_id}\r\n\r\n'.encode()
            )
            reply = _head_reply(connection)
            assert reply.startswith(b'HTTP/1.1 200 '), reply[:200]
            assert b'\r\ncontent-length: %d\r\n' % len(LARGE) in reply.lower()
            assert reply.endswith(b'\r\n\r\n'), f'{len(reply)} bytes: a body was sent'
        connection.sendall(b'GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n')
        assert _head_reply(connection).startswith(b'HTTP/1.1 200 ')


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f'/proc/{pid}/task').iterdir():
        children = (task / 'children').read_text().split()
        for child in children:
            found.extend(_descendants(int(child)))
    return found


def _open_descriptors(server: ServerProcess) -> int:
    assert server.process is not None
    return sum(
        len(list(Path(f'/proc/{pid}/fd').iterdir())) for pid in _descendants(server.process.pid)
    )


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='counts /proc/<pid>/fd')
def test_head_leaves_no_descriptor_open_in_the_server(
    server: ServerProcess, caller: Caller, large_file: tuple[Json, Json, list[str]]
) -> None:
    chat, _, urls = large_file
    history = f'/v1/chats/{chat["chat_id"]}/history'
    assert caller.http.put(history, content=LARGE_HISTORY).status_code == 200
    targets = [*urls, history]
    for url in targets:  # the connection and the stores' own descriptors are open now
        caller.http.head(url)
        caller.http.get(url)
    time.sleep(0.5)
    before = _open_descriptors(server)
    for _ in range(30):
        for url in targets:
            assert caller.http.head(url).status_code == 200
    deadline = time.monotonic() + 5
    while _open_descriptors(server) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_descriptors(server) <= before


# --- request lines and heads no route expects --------------------------------------------------


def test_a_trailing_slash_is_404_not_a_redirect_to_the_host_sent(caller: Caller) -> None:
    caller.workspace_and_chat()
    for path in ('/v1/chats/?limit=1', '/v1/workspace/', '/healthz/'):
        response = caller.http.get(path, headers={'Host': 'evil.example'})
        assert_problem(response, 404, 'not_found')
        assert 'location' not in response.headers


def test_proxy_headers_are_not_trusted(tmp_path: Path) -> None:
    """Neither server takes the scheme or the client address from `X-Forwarded-*` (uvicorn
    would, from 127.0.0.1, by default): the gateway is trusted with identity, not with
    rewriting what the service sees of the connection."""
    env = {'PYTHONPATH': str(Path(__file__).resolve().parent)}
    with ServerProcess(
        tmp_path / 'data', tmp_path, extra_env=env, extra_args=['--app', 'scope_echo:create_app']
    ) as echo:
        seen = httpx.get(
            f'{echo.base_url}/anything',
            headers={'X-Forwarded-Proto': 'https', 'X-Forwarded-For': '203.0.113.9'},
        ).json()
    assert seen == {'scheme': 'http', 'client': HOST, 'path': '/anything'}


def _raw_exchange(server: ServerProcess, request: bytes) -> bytes:
    with socket.create_connection((HOST, server.port), timeout=10) as connection:
        connection.sendall(request)
        return _received(connection)


MALFORMED_LENGTHS = [b'abc', b'-1', b'2, 3']


@pytest.mark.parametrize('length', MALFORMED_LENGTHS, ids=[v.decode() for v in MALFORMED_LENGTHS])
def test_a_malformed_content_length_is_the_servers_bare_400(
    server: ServerProcess, caller: Caller, length: bytes
) -> None:
    """docs/api-notes.md: the HTTP server refuses it before the app runs, with its own
    `400` (no problem document) and closes the connection."""
    reply = _raw_exchange(
        server,
        b'POST /v1/chats HTTP/1.1\r\nHost: test\r\nX-User-Id: %s\r\n'
        b'Content-Type: application/json\r\nContent-Length: %s\r\n\r\n{}'
        % (str(caller.user_id).encode(), length),
    )
    head, _, body = reply.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 400 '), reply[:200]
    assert b'problem+json' not in head
    if HTTP_SERVER == 'granian':
        assert body == b''
    assert caller.http.get('/healthz').status_code == 200


def test_a_control_character_in_a_header_value(server: ServerProcess, caller: Caller) -> None:
    """Granian refuses it with its bare `400`; uvicorn (h11) passes it to the app."""
    reply = _raw_exchange(
        server,
        b'GET /v1/workspace HTTP/1.1\r\nHost: test\r\nX-User-Id: %s\r\n'
        b'X-Note: a\x01b\r\nConnection: close\r\n\r\n' % str(caller.user_id).encode(),
    )
    head, _, body = reply.partition(b'\r\n\r\n')
    if HTTP_SERVER == 'granian':
        assert head.startswith(b'HTTP/1.1 400 '), reply[:200]
        assert body == b''
    else:
        assert head.startswith(b'HTTP/1.1 404 '), reply[:200]  # workspace_not_found
