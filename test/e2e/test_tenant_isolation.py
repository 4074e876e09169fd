"""Tenant isolation, the gateway token and inert downloads, over EVERY route the app has.

The route list comes from the application itself (`create_app().routes`), so a route
added later is walked too: a route with a JSON body needs a valid body in
`JSON_BODIES`, and the walk fails and says so until it has one. The requests go to a
real server process; only the list of routes is read in-process.
"""

import functools
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    HTTP_TIMEOUT,
    Caller,
    Json,
    MakeServer,
    ServerProcess,
    assert_problem,
    dir_snapshot,
)
from fastapi.routing import APIRoute, iter_route_contexts

from api.app import create_app
from api.settings import Settings

pytestmark = pytest.mark.e2e

LINK_SECRET = 'isolation-link-secret-0123456789abcdef'
GATEWAY_TOKEN = 'isolation-gateway-token'
OPERATIONS = {'/healthz', '/readyz', '/metrics'}
# a valid JSON body for every route that takes one, by (method, path template)
JSON_BODIES: dict[tuple[str, str], Json] = {
    ('POST', '/v1/chats'): {'title': 'hijacked'},
    ('PATCH', '/v1/chats/{chat_id}'): {'title': 'hijacked'},
    ('PUT', '/v1/chats/{chat_id}/sandbox'): {'ttl_seconds': 60},
    ('POST', '/v1/chats/{chat_id}/files/{file_id}/link'): {'expires_in': 60},
}
PARAMETER = re.compile(r'{(\w+)(?::\w+)?}')
LARGE = os.urandom(150_000)  # above the size that is read whole: sent by path or streamed
ACTIVE = b'<html><script>alert(document.cookie)</script></html>'


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    json_body: bool

    @property
    def parameters(self) -> list[str]:
        return list(PARAMETER.findall(self.template))

    def path(self, values: dict[str, str]) -> str:
        missing = [p for p in self.parameters if p not in values]
        assert not missing, f'{self}: no value for {missing}; teach this test the new parameter'
        return PARAMETER.sub(lambda m: values[m.group(1)], self.template)

    def request_kwargs(self) -> dict[str, Any]:
        """A body that passes validation, so that what answers is the ownership check."""
        if self.json_body:
            body = JSON_BODIES.get((self.method, self.template))
            assert body is not None, f'{self}: add a valid JSON body to JSON_BODIES'
            return {'json': body}
        if self.method in {'PUT', 'POST'} and self.template.endswith('/history'):
            return {'content': b'hijacked\n'}
        if '{name' in self.template:
            return {'content': b'hijacked'}
        if self.method == 'POST' and self.template.endswith('/files'):
            return {'files': {'file': ('secret.txt', b'hijacked')}}
        return {}

    def __str__(self) -> str:
        return f'{self.method} {self.template}'


def _endpoints() -> list[Endpoint]:
    """Every method of every route of the app, as the app itself lists them."""
    app = create_app(Settings(data_dir=Path('unused'), metadata_backend='memory'))
    endpoints = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue  # the OpenAPI document and its viewers
        methods = sorted((context.methods or set()) - {'HEAD'})
        endpoints += [Endpoint(m, str(context.path), _takes_json(route)) for m in methods]
    return endpoints


def _takes_json(route: APIRoute) -> bool:
    """A JSON body FastAPI reads, or one the route parses itself and declares for the
    document (`openapi_extra`), as the link route does."""
    declared = (route.openapi_extra or {}).get('requestBody', {}).get('content', {})
    return route.body_field is not None or 'application/json' in declared


@functools.cache
def endpoints() -> tuple[Endpoint, ...]:
    """Built on first use, inside a test: building the app configures logging."""
    return tuple(_endpoints())


def v1() -> list[Endpoint]:
    return [e for e in endpoints() if e.template.startswith('/v1/')]


def chat_scoped() -> list[Endpoint]:
    return [e for e in v1() if '{chat_id}' in e.template]


def file_scoped() -> list[Endpoint]:
    return [e for e in chat_scoped() if '{file_id}' in e.template]


def outside_v1() -> list[Endpoint]:
    return [
        e for e in endpoints() if not e.template.startswith('/v1/') and e.template not in OPERATIONS
    ]


def test_the_walk_sees_every_kind_of_route() -> None:
    """The derived list is not empty by accident: the routes the contract names are in it."""
    names = {str(e) for e in endpoints()}
    for expected in (
        'GET /v1/chats/{chat_id}/files/{file_id}/content',
        'PUT /v1/chats/{chat_id}/files/by-name/{name:anything}',
        'DELETE /v1/chats/{chat_id}',
        'PUT /v1/chats/{chat_id}/sandbox',
        'GET /healthz',
    ):
        assert expected in names
    assert len(chat_scoped()) >= 16


@pytest.fixture(scope='module')
def linked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with signed links on, so that the link routes check ownership too."""
    root = tmp_path_factory.mktemp('isolation')
    env = {'STORAGE_LINK_SECRET': LINK_SECRET}
    with ServerProcess(root / 'data', root, backend='sqlite', extra_env=env) as server:
        yield server


@dataclass
class Owner:
    """User A: a chat with a history, a file, and a signed link to it."""

    caller: Caller
    chat: Json
    file: Json
    link: str

    @property
    def ids(self) -> dict[str, str]:
        return {
            'chat_id': self.chat['chat_id'],
            'file_id': self.file['file_id'],
            'name': 'secret.txt',
        }

    def state(self) -> object:
        http, chat_id = self.caller.http, self.chat['chat_id']
        history = http.get(f'/v1/chats/{chat_id}/history')
        return (
            http.get(f'/v1/chats/{chat_id}').json(),
            history.content,
            history.headers['etag'],
            self.caller.files(chat_id),
            [self.caller.content(chat_id, f['file_id']) for f in self.caller.files(chat_id)],
            self.caller.used_bytes(),
            http.get(f'/v1/chats/{chat_id}/sandbox').status_code,
            dir_snapshot(self.caller.chat_dir(self.chat)),
            httpx.get(self.caller.server.base_url + self.link, timeout=HTTP_TIMEOUT).status_code,
        )


@pytest.fixture
def owner(linked_server: ServerProcess) -> Iterator[Owner]:
    alice = Caller(linked_server)
    chat = alice.workspace_and_chat()
    alice.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'# secret history\n')
    file = alice.stored_file(chat['chat_id'], 'secret.txt', b'secret bytes')
    response = alice.http.post(
        f'/v1/chats/{chat["chat_id"]}/files/{file["file_id"]}/link', json={'expires_in': 600}
    )
    assert response.status_code == 201, response.text
    yield Owner(alice, chat, file, response.json()['url'])
    alice.close()


def _masked(response: httpx.Response, *values: str) -> tuple[int, str, Json]:
    """Status, media type and body, with the ids the request named replaced."""
    text = response.text
    for value in values:
        text = text.replace(value, '<id>')
    body = json.loads(text)
    assert isinstance(body, dict)
    return response.status_code, response.headers['content-type'], body


def _random_ids() -> dict[str, str]:
    return {'chat_id': str(uuid.uuid4()), 'file_id': str(uuid.uuid4()), 'name': 'secret.txt'}


def test_every_route_answers_another_users_chat_like_a_missing_one(
    linked_server: ServerProcess, owner: Owner
) -> None:
    bob = Caller(linked_server)
    bob.workspace_and_chat()
    before = owner.state()
    failures = []
    for endpoint in chat_scoped():
        missing_ids = _random_ids()
        foreign = bob.http.request(
            endpoint.method, endpoint.path(owner.ids), **endpoint.request_kwargs()
        )
        missing = bob.http.request(
            endpoint.method, endpoint.path(missing_ids), **endpoint.request_kwargs()
        )
        try:
            assert_problem(missing, 404, 'chat_not_found')
            assert_problem(foreign, 404, 'chat_not_found')
            assert _masked(foreign, owner.chat['chat_id'], owner.file['file_id']) == _masked(
                missing, missing_ids['chat_id'], missing_ids['file_id']
            )
        except AssertionError as error:
            failures.append(f'{endpoint}: {error}')
    bob.close()

    assert failures == []
    assert owner.state() == before


def test_every_route_answers_another_users_file_in_my_chat_like_a_missing_one(
    linked_server: ServerProcess, owner: Owner
) -> None:
    bob = Caller(linked_server)
    mine = bob.workspace_and_chat()['chat_id']
    before = owner.state()
    failures = []
    for endpoint in file_scoped():
        missing_file = str(uuid.uuid4())
        foreign = bob.http.request(
            endpoint.method,
            endpoint.path({**owner.ids, 'chat_id': mine}),
            **endpoint.request_kwargs(),
        )
        missing = bob.http.request(
            endpoint.method,
            endpoint.path({**owner.ids, 'chat_id': mine, 'file_id': missing_file}),
            **endpoint.request_kwargs(),
        )
        try:
            assert_problem(missing, 404, 'chat_file_not_found')
            assert_problem(foreign, 404, 'chat_file_not_found')
            assert _masked(foreign, owner.file['file_id']) == _masked(missing, missing_file)
        except AssertionError as error:
            failures.append(f'{endpoint}: {error}')
    bob.close()

    assert failures == []
    assert owner.state() == before


def test_routes_outside_v1_answer_another_users_file_like_a_missing_one(
    linked_server: ServerProcess, owner: Owner
) -> None:
    """A signed link's route takes no identity: an id without a valid signature is 403."""
    routes = [e for e in outside_v1() if '{file_id}' in e.template]
    before = owner.state()
    http = httpx.Client(base_url=linked_server.base_url, timeout=HTTP_TIMEOUT)
    for endpoint in routes:
        missing_file = str(uuid.uuid4())
        for query in ({}, {'expires': '9999999999', 'signature': 'AAAA'}):
            foreign = http.request(endpoint.method, endpoint.path(owner.ids), params=query)
            missing = http.request(
                endpoint.method, endpoint.path({'file_id': missing_file}), params=query
            )
            assert_problem(foreign, 403, 'invalid_link')
            assert _masked(foreign, owner.file['file_id']) == _masked(missing, missing_file)
    http.close()
    assert owner.state() == before


# --- the gateway token -------------------------------------------------------------------------


@pytest.fixture
def gated(make_server: MakeServer) -> ServerProcess:
    return make_server(
        'sqlite', {'STORAGE_GATEWAY_TOKEN': GATEWAY_TOKEN, 'STORAGE_LINK_SECRET': LINK_SECRET}
    )


BAD_VALUES = {'chat_id': 'not-a-uuid', 'file_id': '%00', 'name': '..%2F..%2Fetc%2Fpasswd'}


def test_every_v1_route_needs_the_gateway_token_even_with_a_bad_path(gated: ServerProcess) -> None:
    user = str(uuid.uuid4())
    refused_credentials = {
        'no token': {'X-User-Id': user},
        'wrong token': {'X-User-Id': user, 'Authorization': 'Bearer wrong'},
        'token without Bearer': {'X-User-Id': user, 'Authorization': GATEWAY_TOKEN},
        # the scheme is case-insensitive (RFC 9110), the token is not
        'token of another case': {
            'X-User-Id': user,
            'Authorization': f'Bearer {GATEWAY_TOKEN.swapcase()}',
        },
        'right token, no user': {'Authorization': f'Bearer {GATEWAY_TOKEN}'},
    }
    http = httpx.Client(base_url=gated.base_url, timeout=HTTP_TIMEOUT)
    failures = []
    for endpoint in v1():
        for values in (_random_ids(), BAD_VALUES):
            # malformed bodies too: identity is checked before the body is parsed
            for kwargs in (endpoint.request_kwargs(), {'content': b'{"title": '}):
                for label, headers in refused_credentials.items():
                    response = http.request(
                        endpoint.method, endpoint.path(values), headers=headers, **kwargs
                    )
                    try:
                        assert_problem(response, 401, 'unauthenticated')
                    except AssertionError as error:
                        failures.append(f'{endpoint} {values} {label}: {error}')
    http.close()

    assert failures == []


def test_the_right_token_and_user_reach_every_route(gated: ServerProcess) -> None:
    """The 401s above are about the token: with it, no route answers 401."""
    caller = Caller(gated, {'Authorization': f'Bearer {GATEWAY_TOKEN}'})
    caller.workspace_and_chat()
    for endpoint in v1():
        response = caller.http.request(
            endpoint.method, endpoint.path(_random_ids()), **endpoint.request_kwargs()
        )
        assert response.status_code != 401, f'{endpoint}: {response.text}'
    caller.close()


def test_operations_and_links_need_no_token(gated: ServerProcess) -> None:
    http = httpx.Client(base_url=gated.base_url, timeout=HTTP_TIMEOUT)
    for path in sorted(OPERATIONS):
        assert http.get(path).status_code == 200, path
    for endpoint in outside_v1():
        if '{' not in endpoint.template:
            continue
        response = http.request(endpoint.method, endpoint.path(_random_ids()))
        assert response.status_code != 401, f'{endpoint}: {response.text}'
    http.close()


# --- downloads never render ------------------------------------------------------------------


def _assert_inert(response: httpx.Response, where: str) -> None:
    headers = response.headers
    assert headers.get('content-disposition', '').startswith('attachment'), where
    assert headers.get('x-content-type-options') == 'nosniff', where
    policy = headers.get('content-security-policy', '')
    assert "default-src 'none'" in policy, where
    assert 'sandbox' in policy, where


@pytest.mark.parametrize('content', [ACTIVE, ACTIVE + LARGE], ids=['small', 'large'])
def test_every_route_that_serves_stored_bytes_serves_them_inert(
    linked_server: ServerProcess, content: bytes
) -> None:
    """Any GET whose answer is not JSON serves stored bytes: each must be an inert attachment.

    HTML with a script, stored as text/html, small (sent whole) and large (sent by path or
    streamed); both as a whole and as a range.
    """
    caller = Caller(linked_server)
    chat = caller.workspace_and_chat()
    chat_id = chat['chat_id']
    caller.http.put(f'/v1/chats/{chat_id}/history', content=b'<script>alert(1)</script>\n')
    caller.http.put(f'/v1/chats/{chat_id}/sandbox', json={'ttl_seconds': 600})
    stored = caller.put_file(chat_id, 'page.html', content, content_type='text/html')
    assert stored.status_code == 201, stored.text
    file_id = stored.json()['file_id']
    link = caller.http.post(
        f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': 600}
    ).json()['url']
    values = {'chat_id': chat_id, 'file_id': file_id, 'name': 'page.html'}
    served = []
    for endpoint in [e for e in endpoints() if e.method == 'GET' and '{' in e.template]:
        if endpoint.template.startswith('/v1'):
            path, http = endpoint.path(values), caller.http
        else:  # a signed link: its own query, no identity
            path, http = link, httpx.Client(base_url=linked_server.base_url)
        for headers in ({}, {'Range': 'bytes=0-9'}):
            response = http.get(path, headers=headers)
            assert response.status_code in {200, 206}, f'{endpoint}: {response.text}'
            media_type = response.headers['content-type'].split(';')[0]
            if media_type == 'application/json':
                continue
            served.append(str(endpoint))
            if media_type == 'text/markdown':
                # the history is text of the chat, not a download: never sniffed, never run
                assert response.headers.get('x-content-type-options') == 'nosniff'
                assert "default-src 'none'" in response.headers['content-security-policy']
                continue
            _assert_inert(response, str(endpoint))
    caller.close()

    assert 'GET /v1/chats/{chat_id}/files/{file_id}/content' in served
    assert any('export' in s for s in served)
    assert any(s.startswith('GET /links/') for s in served)
