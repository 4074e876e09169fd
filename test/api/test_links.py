"""Signed download links: `POST …/files/{file_id}/link` and `GET /links/{file_id}`."""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import httpx
import pytest
from asgi_lifespan import LifespanManager

from api.app import create_app
from api.settings import Settings

SECRET = 'link-secret-for-tests-0123456789abcdef'
GATEWAY_TOKEN = 'gateway-token-for-tests'
AUTH = {'Authorization': f'Bearer {GATEWAY_TOKEN}'}
JSON = {'Content-Type': 'application/json'}
BODY = b'0123456789abcdefghij'
# everything that describes the bytes served (request ids, dates and such may differ)
REPRESENTATION_HEADERS = (
    'content-type',
    'content-length',
    'etag',
    'accept-ranges',
    'content-disposition',
    'x-content-type-options',
    'content-security-policy',
)


class SteppedClock(Protocol):
    def now(self) -> datetime: ...

    def advance(self, seconds: float) -> None: ...


def user(user_id: object) -> dict[str, str]:
    return {'X-User-Id': str(user_id), **AUTH}


@dataclass
class Clients:
    owner: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    """No X-User-Id, no gateway token: what a browser following the link sends."""
    clock: SteppedClock


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(link_secret=SECRET, gateway_token=GATEWAY_TOKEN)


@pytest.fixture
async def clients(client: httpx.AsyncClient, clock: SteppedClock) -> AsyncIterator[Clients]:
    client.headers.update(AUTH)
    async with httpx.AsyncClient(
        transport=client._transport, base_url=client.base_url
    ) as anonymous:
        yield Clients(owner=client, anonymous=anonymous, clock=clock)


@pytest.fixture
async def chat_id(clients: Clients) -> str:
    assert (await clients.owner.put('/v1/workspace')).status_code == 201
    return str((await clients.owner.post('/v1/chats', json={'title': 't'})).json()['chat_id'])


async def upload(clients: Clients, chat_id: str, name: str, content: bytes) -> str:
    response = await clients.owner.put(
        f'/v1/chats/{chat_id}/files/by-name/{name}',
        content=content,
        headers={'Content-Type': 'text/plain'},
    )
    assert response.status_code in {200, 201}, response.text
    return str(response.json()['file_id'])


@pytest.fixture
async def file_id(clients: Clients, chat_id: str) -> str:
    return await upload(clients, chat_id, 'notes.txt', BODY)


async def make_link(clients: Clients, chat_id: str, file_id: str, expires_in: int = 60) -> str:
    response = await clients.owner.post(
        f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': expires_in}
    )
    assert response.status_code == 201, response.text
    return str(response.json()['url'])


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts.path + '?' + '&'.join(f'{k}={v}' for k, v in query.items())


def assert_invalid_link(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers['content-type'] == 'application/problem+json'
    assert response.json()['code'] == 'invalid_link'


def representation(response: httpx.Response) -> dict[str, str]:
    return {k: response.headers.get(k, '') for k in REPRESENTATION_HEADERS}


# --- making a link -------------------------------------------------------------------


async def test_link_is_root_relative_and_expires_in_whole_seconds(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    response = await clients.owner.post(
        f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': 600}
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {'url', 'expires_at'}
    parts = urlsplit(body['url'])
    assert (parts.scheme, parts.netloc, parts.path) == ('', '', f'/links/{file_id}')
    query = parse_qs(parts.query)
    assert set(query) == {'expires', 'signature'}
    # the clock read 12:00:00.001: expiry is 600 s after, rounded down to the second
    expires = datetime(2026, 11, 23, 12, 10, 0, tzinfo=UTC)
    assert query['expires'] == [str(int(expires.timestamp()))]
    assert body['expires_at'] == '2026-11-23T12:10:00.000000Z'


@pytest.mark.parametrize('expires_in', [0, -1, 86_401, '60', 1.5, None, True])
async def test_expires_in_out_of_range_or_not_an_int_is_422(
    clients: Clients, chat_id: str, file_id: str, expires_in: object
) -> None:
    response = await clients.owner.post(
        f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': expires_in}
    )

    assert response.status_code == 422
    assert response.json()['code'] == 'validation_error'
    assert response.json()['errors'][0]['loc'] == ['body', 'expires_in']


async def test_expires_in_may_be_a_whole_number_written_with_a_fraction(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    # JSON Schema's `integer`, the type the document publishes, is any number whose
    # fraction is zero
    whole = await clients.owner.post(
        f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': 345.0}
    )
    assert whole.status_code == 201
    assert whole.json()['expires_at'] == '2026-11-23T12:05:45.000000Z'
    too_long = await clients.owner.post(
        f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': 86_401.0}
    )
    assert too_long.status_code == 422
    assert too_long.json()['errors'][0]['loc'] == ['body', 'expires_in']


@pytest.mark.parametrize('expires_in', [1, 86_400])
async def test_expires_in_bounds_are_accepted(
    clients: Clients, chat_id: str, file_id: str, expires_in: int
) -> None:
    url = await make_link(clients, chat_id, file_id, expires_in)

    assert (await clients.anonymous.get(url)).content == BODY


async def test_missing_body_is_422(clients: Clients, chat_id: str, file_id: str) -> None:
    response = await clients.owner.post(f'/v1/chats/{chat_id}/files/{file_id}/link')

    assert response.status_code == 422
    assert response.json()['code'] == 'validation_error'


async def test_link_to_another_users_file_is_not_found(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    other = user(uuid4())
    await clients.owner.put('/v1/workspace', headers=other)

    response = await clients.owner.post(
        f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': 60}, headers=other
    )

    assert response.status_code == 404
    assert response.json()['code'] == 'chat_not_found'


async def test_link_to_an_unknown_file_is_not_found(clients: Clients, chat_id: str) -> None:
    response = await clients.owner.post(
        f'/v1/chats/{chat_id}/files/00000000-0000-4000-8000-000000000000/link',
        json={'expires_in': 60},
    )

    assert response.status_code == 404
    assert response.json()['code'] == 'chat_file_not_found'


async def test_making_a_link_needs_the_caller(clients: Clients, chat_id: str, file_id: str) -> None:
    response = await clients.anonymous.post(
        f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': 60}
    )

    assert response.status_code == 401
    assert response.json()['code'] == 'unauthenticated'


# --- following a link ------------------------------------------------------------------


async def test_link_serves_the_content_exactly_like_the_content_route(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    url = await make_link(clients, chat_id, file_id)

    linked = await clients.anonymous.get(url)
    direct = await clients.owner.get(f'/v1/chats/{chat_id}/files/{file_id}/content')

    assert linked.status_code == 200
    assert linked.content == BODY
    assert representation(linked) == representation(direct)
    assert linked.headers['content-type'] == 'text/plain'
    assert linked.headers['content-length'] == str(len(BODY))
    assert linked.headers['accept-ranges'] == 'bytes'
    assert linked.headers['etag'].startswith('"')
    assert linked.headers['content-disposition'].startswith('attachment;')
    assert linked.headers['x-content-type-options'] == 'nosniff'
    assert linked.headers['content-security-policy'] == "default-src 'none'; sandbox"


async def test_link_serves_a_range(clients: Clients, chat_id: str, file_id: str) -> None:
    url = await make_link(clients, chat_id, file_id)

    response = await clients.anonymous.get(url, headers={'Range': 'bytes=2-5'})

    assert response.status_code == 206
    assert response.content == BODY[2:6]
    assert response.headers['content-range'] == f'bytes 2-5/{len(BODY)}'
    assert response.headers['content-length'] == '4'


async def test_link_range_past_the_end_is_416(clients: Clients, chat_id: str, file_id: str) -> None:
    url = await make_link(clients, chat_id, file_id)

    response = await clients.anonymous.get(url, headers={'Range': f'bytes={len(BODY)}-'})

    assert response.status_code == 416
    assert response.json()['code'] == 'range_not_satisfiable'
    assert response.headers['content-range'] == f'bytes */{len(BODY)}'


async def test_link_answers_304_to_the_current_etag(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    url = await make_link(clients, chat_id, file_id)
    etag = (await clients.anonymous.get(url)).headers['etag']

    response = await clients.anonymous.get(url, headers={'If-None-Match': etag})

    assert response.status_code == 304
    assert response.content == b''
    assert response.headers['etag'] == etag


async def test_link_ignores_a_foreign_user_header(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    url = await make_link(clients, chat_id, file_id)

    response = await clients.anonymous.get(url, headers={'X-User-Id': str(uuid4())})

    assert response.content == BODY


async def test_link_is_valid_until_its_last_second_then_expires(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    url = await make_link(clients, chat_id, file_id, expires_in=60)

    clients.clock.advance(59)  # 12:00:59.00x
    assert (await clients.anonymous.get(url)).status_code == 200
    clients.clock.advance(1)  # 12:01:00.00x: expired
    assert_invalid_link(await clients.anonymous.get(url))


async def test_tampered_signature_is_refused(clients: Clients, chat_id: str, file_id: str) -> None:
    url = await make_link(clients, chat_id, file_id)
    signature = parse_qs(urlsplit(url).query)['signature'][0]
    flipped = ('B' if signature[0] == 'A' else 'A') + signature[1:]

    assert_invalid_link(await clients.anonymous.get(with_query(url, signature=flipped)))
    assert_invalid_link(await clients.anonymous.get(with_query(url, signature=signature[:-1])))
    assert_invalid_link(await clients.anonymous.get(with_query(url, signature='')))
    assert_invalid_link(await clients.anonymous.get(with_query(url, signature='%C3%A9')))


async def test_tampered_expiry_is_refused(clients: Clients, chat_id: str, file_id: str) -> None:
    url = await make_link(clients, chat_id, file_id)
    expires = int(parse_qs(urlsplit(url).query)['expires'][0])

    assert_invalid_link(await clients.anonymous.get(with_query(url, expires=str(expires + 1))))
    assert_invalid_link(await clients.anonymous.get(with_query(url, expires='soon')))
    assert_invalid_link(await clients.anonymous.get(with_query(url, expires='')))


async def test_tampered_file_id_is_refused(clients: Clients, chat_id: str, file_id: str) -> None:
    other_file = await upload(clients, chat_id, 'other.txt', BODY)
    url = await make_link(clients, chat_id, file_id)
    query = urlsplit(url).query

    assert_invalid_link(await clients.anonymous.get(f'/links/{other_file}?{query}'))
    assert_invalid_link(
        await clients.anonymous.get(f'/links/00000000-0000-4000-8000-000000000000?{query}')
    )
    assert_invalid_link(await clients.anonymous.get(f'/links/not-a-uuid?{query}'))


async def test_a_link_is_valid_only_as_it_was_written(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    """Other spellings of its values (`UUID()` and `int()` would take them) or a member
    given twice (which one counts?) are malformed links: `403`, never served."""
    url = await make_link(clients, chat_id, file_id)
    parts = urlsplit(url)
    expires = parse_qs(parts.query)['expires'][0]
    signature = parse_qs(parts.query)['signature'][0]
    query = f'expires={expires}&signature={signature}'
    uid = UUID(file_id)
    for spelling in (str(uid).upper(), f'{{{uid}}}', uid.hex, f'urn:uuid:{uid}'):
        assert_invalid_link(await clients.anonymous.get(f'/links/{spelling}?{query}'))
    for other in (f'+{expires}', f'0{expires}', f'%20{expires}', f'{expires}.0', f'{expires}_'):
        assert_invalid_link(
            await clients.anonymous.get(f'/links/{file_id}?expires={other}&signature={signature}')
        )
    assert_invalid_link(await clients.anonymous.get(f'/links/{file_id}?{query}&signature=x'))
    assert_invalid_link(await clients.anonymous.get(f'/links/{file_id}?{query}&expires=1'))
    assert (await clients.anonymous.get(f'/links/{file_id}?{query}')).status_code == 200


async def test_link_without_its_query_is_refused(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    assert_invalid_link(await clients.anonymous.get(f'/links/{file_id}'))


async def test_replaced_file_invalidates_its_link(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    url = await make_link(clients, chat_id, file_id)

    new_file = await upload(clients, chat_id, 'notes.txt', b'new content')

    assert_invalid_link(await clients.anonymous.get(url))
    new_url = await make_link(clients, chat_id, new_file)
    assert (await clients.anonymous.get(new_url)).content == b'new content'


async def test_replacement_by_the_same_bytes_still_invalidates_the_link(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    url = await make_link(clients, chat_id, file_id)

    await upload(clients, chat_id, 'notes.txt', BODY)

    assert_invalid_link(await clients.anonymous.get(url))


async def test_deleted_file_invalidates_its_link(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    url = await make_link(clients, chat_id, file_id)

    assert (await clients.owner.delete(f'/v1/chats/{chat_id}/files/{file_id}')).status_code == 204

    assert_invalid_link(await clients.anonymous.get(url))


async def test_deleted_chat_invalidates_its_links(
    clients: Clients, chat_id: str, file_id: str
) -> None:
    url = await make_link(clients, chat_id, file_id)

    assert (await clients.owner.delete(f'/v1/chats/{chat_id}')).status_code == 204

    assert_invalid_link(await clients.anonymous.get(url))


# --- links off -------------------------------------------------------------------------


async def test_links_are_off_without_a_secret(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(gateway_token=GATEWAY_TOKEN))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        base = 'http://testserver'
        async with (
            httpx.AsyncClient(transport=transport, base_url=base, headers=user(uuid4())) as owner,
            httpx.AsyncClient(transport=transport, base_url=base) as anonymous,
        ):
            await owner.put('/v1/workspace')
            chat_id = (await owner.post('/v1/chats')).json()['chat_id']
            uploaded = await owner.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=BODY)
            file_id = uploaded.json()['file_id']

            made = await owner.post(
                f'/v1/chats/{chat_id}/files/{file_id}/link', json={'expires_in': 60}
            )
            followed = await anonymous.get(f'/links/{file_id}?expires=9999999999&signature=AAAA')

    assert made.status_code == 404
    assert made.headers['content-type'] == 'application/problem+json'
    assert made.json()['code'] == 'not_found'
    assert 'not enabled' in made.json()['detail']
    assert_invalid_link(followed)


async def test_with_links_off_the_route_is_404_whatever_the_request(
    make_settings: Callable[..., Settings],
) -> None:
    """ADR 018: without a secret the route does not exist; its body and path are never
    looked at (they were: a bad body was 422)."""
    app = create_app(make_settings(gateway_token=GATEWAY_TOKEN))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url='http://testserver', headers=user(uuid4())
        ) as owner:
            await owner.put('/v1/workspace')
            chat_id = (await owner.post('/v1/chats')).json()['chat_id']
            url = f'/v1/chats/{chat_id}/files/{uuid4()}/link'
            answers = [
                await owner.post(url, json={'expires_in': 0}),
                await owner.post(url, json={'expires_in': '60', 'extra': 1}),
                await owner.post(url, content=b'{not json', headers=JSON),
                await owner.post(url, content=b'\xff\xfe', headers=JSON),
                await owner.post(url),
                await owner.post(url, content=b'expires_in=60'),
                await owner.post(url, content=b'{}' + b' ' * 70_000, headers=JSON),
                await owner.post(f'/v1/chats/{chat_id}/files/not-a-uuid/link', json={}),
            ]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert answer.json()['code'] == 'not_found'


async def test_a_link_body_is_refused_as_a_json_body_is(clients: Clients, chat_id: str) -> None:
    url = f'/v1/chats/{chat_id}/files/{uuid4()}/link'
    cases = [
        ({'json': {'expires_in': 0}}, 422, 'validation_error', ['body', 'expires_in']),
        ({'json': {'expires_in': True}}, 422, 'validation_error', ['body', 'expires_in']),
        ({'json': {'expires_in': 60, 'x': 1}}, 422, 'validation_error', ['body', 'x']),
        ({'json': [60]}, 422, 'validation_error', ['body']),
        ({}, 422, 'validation_error', ['body']),
        ({'content': b'{not json', 'headers': JSON}, 422, 'validation_error', ['body', 1]),
        ({'content': b'\xff\xfe\xfd', 'headers': JSON}, 422, 'validation_error', ['body']),
        ({'content': b'expires_in=60'}, 415, 'unsupported_media_type', None),
        ({'content': b'{}' + b' ' * 70_000, 'headers': JSON}, 413, 'request_too_large', None),
    ]
    for request, status, code, loc in cases:
        response = await clients.owner.post(url, **request)  # type: ignore[arg-type]
        assert (response.status_code, response.json()['code']) == (status, code), request
        if loc is not None:
            assert response.json()['errors'][0]['loc'] == loc, request
    # a valid body reaches the lookup
    missing = await clients.owner.post(url, json={'expires_in': 60})
    assert missing.json()['code'] == 'chat_file_not_found'
