"""Problem responses over real HTTP: their shape, no existence leak, refused names."""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from e2e_support import (
    Caller,
    Json,
    assert_problem,
    blob_area,
    dir_snapshot,
    multipart_body,
    staging_entries,
)

pytestmark = pytest.mark.e2e

BOUNDARY = 'e2e-boundary-7f3a'
MULTIPART = f'multipart/form-data; boundary={BOUNDARY}'


# --- the problem shape ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A request that must fail, and how."""

    method: str
    path: str
    status: int
    code: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


BAD_REQUESTS = {
    'no user id': Bad('GET', '/v1/workspace', 401, 'unauthenticated', headers=(('X-User-Id', ''),)),
    'user id not a uuid': Bad(
        'GET', '/v1/workspace', 401, 'unauthenticated', headers=(('X-User-Id', 'alice'),)
    ),
    'chat id not a uuid': Bad('GET', '/v1/chats/not-a-uuid', 422, 'validation_error'),
    'file id not a uuid': Bad('GET', '/v1/chats/{chat}/files/nope', 422, 'validation_error'),
    'bad json': Bad(
        'POST',
        '/v1/chats',
        422,
        'validation_error',
        kwargs=(('content', b'{"title": '),),
        headers=(('Content-Type', 'application/json'),),
    ),
    'title too long': Bad(
        'POST', '/v1/chats', 422, 'validation_error', kwargs=(('json', {'title': 'x' * 201}),)
    ),
    'patch without title': Bad(
        'PATCH', '/v1/chats/{chat}', 422, 'validation_error', kwargs=(('json', {}),)
    ),
    'limit 0': Bad('GET', '/v1/chats?limit=0', 422, 'validation_error'),
    'limit 201': Bad('GET', '/v1/chats?limit=201', 422, 'validation_error'),
    'limit not a number': Bad('GET', '/v1/chats?limit=ten', 422, 'validation_error'),
    'foreign cursor': Bad('GET', '/v1/chats?cursor=garbage', 422, 'validation_error'),
    'file list cursor': Bad('GET', '/v1/chats/{chat}/files?cursor=%00%01', 422, 'validation_error'),
    'ttl 0': Bad(
        'PUT',
        '/v1/chats/{chat}/sandbox',
        422,
        'validation_error',
        kwargs=(('json', {'ttl_seconds': 0}),),
    ),
    'ttl too long': Bad(
        'PUT',
        '/v1/chats/{chat}/sandbox',
        422,
        'validation_error',
        kwargs=(('json', {'ttl_seconds': 86_401}),),
    ),
    'unknown chat': Bad('GET', '/v1/chats/{missing}', 404, 'chat_not_found'),
    'unknown file': Bad('GET', '/v1/chats/{chat}/files/{missing}', 404, 'chat_file_not_found'),
    'unknown file content': Bad(
        'GET', '/v1/chats/{chat}/files/{missing}/content', 404, 'chat_file_not_found'
    ),
    'unknown route': Bad('GET', '/v1/nowhere', 404, 'not_found'),
    'method not allowed': Bad('PATCH', '/v1/workspace', 405, 'method_not_allowed'),
    'not multipart': Bad(
        'POST',
        '/v1/chats/{chat}/files',
        415,
        'unsupported_media_type',
        kwargs=(('content', b'{"a": 1}'),),
        headers=(('Content-Type', 'application/json'),),
    ),
    'history not utf-8': Bad(
        'PUT',
        '/v1/chats/{chat}/history',
        422,
        'invalid_history_encoding',
        kwargs=(('content', b'\xff\xfe'),),
    ),
}


@pytest.mark.parametrize('bad', BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_every_error_is_a_problem_document_without_leaks(caller: Caller, bad: Bad) -> None:
    chat = caller.workspace_and_chat()
    path = bad.path.format(chat=chat['chat_id'], missing=uuid.uuid4())

    response = caller.http.request(bad.method, path, headers=dict(bad.headers), **dict(bad.kwargs))

    body = assert_problem(response, bad.status, bad.code)
    assert chat['workspace_id'] not in str(body.get('detail', ''))


def test_validation_problem_lists_the_offending_field(caller: Caller) -> None:
    caller.workspace()

    response = caller.http.get('/v1/chats', params={'limit': 0})

    body = assert_problem(response, 422, 'validation_error')
    assert any('limit' in error['loc'] for error in body['errors'])


def test_unauthenticated_answers_before_any_lookup(caller: Caller) -> None:
    response = caller.http.post('/v1/chats', headers={'X-User-Id': 'not-a-uuid'})

    assert_problem(response, 401, 'unauthenticated')


# --- another user's chat and file look exactly like missing ones -------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    kwargs: tuple[tuple[str, Any], ...] = ()


CHAT_ROUTES = {
    'get chat': Route('GET', '/v1/chats/{chat}'),
    'patch chat': Route('PATCH', '/v1/chats/{chat}', (('json', {'title': 'hijacked'}),)),
    'delete chat': Route('DELETE', '/v1/chats/{chat}'),
    'get history': Route('GET', '/v1/chats/{chat}/history'),
    'put history': Route('PUT', '/v1/chats/{chat}/history', (('content', b'hijacked'),)),
    'append history': Route('POST', '/v1/chats/{chat}/history', (('content', b'hijacked'),)),
    'list files': Route('GET', '/v1/chats/{chat}/files'),
    'clear files': Route('DELETE', '/v1/chats/{chat}/files'),
    'upload multipart': Route(
        'POST', '/v1/chats/{chat}/files', (('files', {'file': ('x.txt', b'hijacked')}),)
    ),
    'upload raw': Route('PUT', '/v1/chats/{chat}/files/by-name/x.txt', (('content', b'hi'),)),
    'file record': Route('GET', '/v1/chats/{chat}/files/{file}'),
    'file content': Route('GET', '/v1/chats/{chat}/files/{file}/content'),
    'delete file': Route('DELETE', '/v1/chats/{chat}/files/{file}'),
    'get sandbox': Route('GET', '/v1/chats/{chat}/sandbox'),
    'start sandbox': Route('PUT', '/v1/chats/{chat}/sandbox', (('json', {'ttl_seconds': 60}),)),
    'end sandbox': Route('DELETE', '/v1/chats/{chat}/sandbox'),
}
FILE_ROUTES = {k: v for k, v in CHAT_ROUTES.items() if '{file}' in v.path}


def _masked(response: httpx.Response, *ids: str) -> Json:
    """The problem body with the ids the caller asked about replaced by a placeholder."""
    text = response.text
    for value in ids:
        text = text.replace(value, '<id>')
    body = json.loads(text)
    assert isinstance(body, dict)
    return body


@dataclass
class Owner:
    caller: Caller
    chat: Json
    file: Json
    history: bytes

    def state(self) -> tuple[Json, bytes, list[Json], int]:
        chat_id = self.chat['chat_id']
        chat = self.caller.http.get(f'/v1/chats/{chat_id}').json()
        return (
            chat,
            self.caller.history(chat_id),
            self.caller.files(chat_id),
            self.caller.used_bytes(),
        )


@pytest.fixture
def owner(make_caller: Callable[[], Caller]) -> Owner:
    """User A with a chat, its history and a file."""
    alice = make_caller()
    chat = alice.workspace_and_chat()
    alice.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'# secret')
    file = alice.stored_file(chat['chat_id'], 'secret.txt', b'secret bytes')
    return Owner(alice, chat, file, b'# secret')


@pytest.mark.parametrize('route', CHAT_ROUTES.values(), ids=CHAT_ROUTES.keys())
def test_another_users_chat_answers_like_a_missing_chat(
    owner: Owner, caller: Caller, route: Route
) -> None:
    caller.workspace_and_chat()
    before = owner.state()
    foreign_chat, foreign_file = owner.chat['chat_id'], owner.file['file_id']
    missing_chat, missing_file = str(uuid.uuid4()), str(uuid.uuid4())

    foreign = caller.http.request(
        route.method, route.path.format(chat=foreign_chat, file=foreign_file), **dict(route.kwargs)
    )
    missing = caller.http.request(
        route.method, route.path.format(chat=missing_chat, file=missing_file), **dict(route.kwargs)
    )

    assert_problem(missing, 404, 'chat_not_found')
    assert_problem(foreign, 404, 'chat_not_found')
    assert _masked(foreign, foreign_chat, foreign_file) == _masked(
        missing, missing_chat, missing_file
    )
    assert owner.state() == before


@pytest.mark.parametrize('route', FILE_ROUTES.values(), ids=FILE_ROUTES.keys())
def test_another_users_file_in_my_chat_answers_like_a_missing_file(
    owner: Owner, caller: Caller, route: Route
) -> None:
    mine = caller.workspace_and_chat()['chat_id']
    before = owner.state()
    foreign_file, missing_file = owner.file['file_id'], str(uuid.uuid4())

    foreign = caller.http.request(route.method, route.path.format(chat=mine, file=foreign_file))
    missing = caller.http.request(route.method, route.path.format(chat=mine, file=missing_file))

    assert_problem(missing, 404, 'chat_file_not_found')
    assert_problem(foreign, 404, 'chat_file_not_found')
    assert _masked(foreign, foreign_file) == _masked(missing, missing_file)
    assert owner.state() == before


def test_another_users_chat_is_not_listed(owner: Owner, caller: Caller) -> None:
    caller.workspace_and_chat()

    items = caller.http.get('/v1/chats').json()['items']

    assert owner.chat['chat_id'] not in [item['chat_id'] for item in items]


# --- refused attachment names: 422 and nothing written ---------------------------------------


@dataclass
class Snapshot:
    files: dict[str, str]
    staging: set[str]
    blobs: set[str]
    used_bytes: int
    records: list[Json]


def _snapshot(caller: Caller, chat: Json) -> Snapshot:
    return Snapshot(
        dir_snapshot(caller.chat_dir(chat)),
        staging_entries(caller.server.data_dir),
        blob_area(caller.server.data_dir),
        caller.used_bytes(),
        caller.files(chat['chat_id']),
    )


@pytest.fixture
def chat_with_a_file(caller: Caller) -> Json:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'# history')
    caller.stored_file(chat['chat_id'], 'existing.txt', b'existing')
    return chat


RAW_NAMES = {
    'dot dot slash': ('..%2Fx', 'invalid_attachment_name'),
    'slash': ('a%2Fb', 'invalid_attachment_name'),
    'backslash': ('a%5Cb', 'invalid_attachment_name'),
    'dot dot': ('%2E%2E', 'invalid_attachment_name'),
    'dot': ('%2E', 'invalid_attachment_name'),
    'nul': ('a%00b', 'invalid_attachment_name'),
    'line feed': ('a%0Ab', 'invalid_attachment_name'),
    'tab': ('a%09b', 'invalid_attachment_name'),
    'carriage return': ('a%0Db', 'invalid_attachment_name'),
    'delete character': ('a%7Fb', 'invalid_attachment_name'),
    '256 bytes': ('n' * 256, 'invalid_attachment_name'),
    '300 bytes': ('n' * 300, 'invalid_attachment_name'),
    '256 bytes of two-byte characters': ('%C3%A9' * 128, 'invalid_attachment_name'),
    'history.md': ('history.md', 'reserved_attachment_name'),
}


@pytest.mark.parametrize(('raw_name', 'code'), RAW_NAMES.values(), ids=RAW_NAMES.keys())
def test_raw_put_of_a_refused_name_is_422_and_writes_nothing(
    caller: Caller, chat_with_a_file: Json, raw_name: str, code: str
) -> None:
    before = _snapshot(caller, chat_with_a_file)
    url = httpx.URL(
        f'{caller.server.base_url}/v1/chats/{chat_with_a_file["chat_id"]}/files/by-name/'
    )
    url = url.copy_with(raw_path=url.raw_path + raw_name.encode())

    response = caller.http.put(url, content=b'payload')

    assert response.request.url.raw_path.endswith(b'/by-name/' + raw_name.encode())
    assert response.status_code == 422, response.text
    assert response.headers['content-type'] == 'application/problem+json'
    assert response.json()['code'] == code
    assert _snapshot(caller, chat_with_a_file) == before


def test_a_name_of_255_bytes_is_accepted(caller: Caller, chat_with_a_file: Json) -> None:
    name = 'é' * 127 + 'n'

    response = caller.put_file(chat_with_a_file['chat_id'], name, b'ok')

    assert response.status_code == 201, response.text
    assert (caller.chat_dir(chat_with_a_file) / name).read_bytes() == b'ok'


MULTIPART_NAMES = {
    'empty filename': {'filename': b''},
    'no filename': {'filename': None},
    'empty name field': {'name_field': b''},
    'nul in name field': {'name_field': b'a\x00b.txt'},
    'slash in name field': {'name_field': b'../escape.txt'},
    'backslash in filename': {'filename': b'a\\\\b'},
    '300-byte filename': {'filename': b'f' * 300},
    '300-byte name field': {'name_field': b'f' * 300},
    'history.md as filename': {'filename': b'history.md'},
}


@pytest.mark.parametrize('form', MULTIPART_NAMES.values(), ids=MULTIPART_NAMES.keys())
def test_multipart_upload_of_a_refused_name_is_422_and_writes_nothing(
    caller: Caller, chat_with_a_file: Json, form: dict[str, Any]
) -> None:
    before = _snapshot(caller, chat_with_a_file)
    body = multipart_body(BOUNDARY, b'payload', **form)

    response = caller.http.post(
        f'/v1/chats/{chat_with_a_file["chat_id"]}/files',
        content=body,
        headers={'Content-Type': MULTIPART},
    )

    expected = (
        'reserved_attachment_name'
        if form.get('filename') == b'history.md'
        else 'invalid_attachment_name'
    )
    assert_problem(response, 422, expected)
    assert _snapshot(caller, chat_with_a_file) == before


def test_hand_built_multipart_with_a_valid_name_is_accepted(
    caller: Caller, chat_with_a_file: Json
) -> None:
    """The hand-built bodies above are refused for their names, not for their framing."""
    body = multipart_body(BOUNDARY, b'payload', filename=b'ok.txt', name_field=b'named.txt')

    response = caller.http.post(
        f'/v1/chats/{chat_with_a_file["chat_id"]}/files',
        content=body,
        headers={'Content-Type': MULTIPART},
    )

    assert response.status_code == 201, response.text
    assert response.json()['name'] == 'named.txt'


@pytest.mark.parametrize(
    'content_type', ['application/json', 'text/plain', 'application/x-www-form-urlencoded', None]
)
def test_non_multipart_body_to_the_multipart_route_is_415(
    caller: Caller, chat_with_a_file: Json, content_type: str | None
) -> None:
    before = _snapshot(caller, chat_with_a_file)
    headers = {'Content-Type': content_type} if content_type else {}

    response = caller.http.post(
        f'/v1/chats/{chat_with_a_file["chat_id"]}/files', content=b'name=x', headers=headers
    )

    assert_problem(response, 415, 'unsupported_media_type')
    assert _snapshot(caller, chat_with_a_file) == before


def test_problem_detail_never_echoes_the_data_directory(
    caller: Caller, chat_with_a_file: Json
) -> None:
    response = caller.put_file(chat_with_a_file['chat_id'], 'history.md', b'x')

    body = assert_problem(response, 422, 'reserved_attachment_name')
    assert str(caller.server.data_dir) not in response.text
    assert not re.search(r'/(tmp|home|work)/', str(body.get('detail', '')))
